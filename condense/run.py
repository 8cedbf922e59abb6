"""The job of `condense distill`: data, pool, the distillation loop, soft labels, evaluation and the run folder's outputs.

`distill(config, out, device)` is the whole job; `prepare` (data and pool) and `pool_spec` serve the
benchmarks and condense-as-you-go, which run the same steps in other orders.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from .config import DistillConfig
from .data import RealData, normalise
from .distill import canvases_of, check_class_sizes, make_method
from .distributed import World, init_world, local_device
from .errors import UserError
from .evaluate import eval_preset, evaluate_set, evaluation_summary, load_teacher
from .loop import run_distillation
from .methods import method_class
from .pool import POOL_TRAINING, SOFT_LABEL_SOURCES, TEACHER_FILE, Pool, PoolSpec, build_or_load_pool, build_or_load_teacher, load_member, member_spec
from .runfolder import check_run_folder, claim_run_folder, load_checkpoint, read_checkpoint
from .runtime import write_json


def pool_spec(config: DistillConfig, real: RealData) -> PoolSpec:
    training = dataclasses.replace(POOL_TRAINING, epochs=config.pool_epochs, dsa=config.pool_dsa, dsa_mode=config.pool_dsa_mode).to_dict()
    dataset = real.source if real.revision is None else f"{real.source}@{real.revision}"  # another revision, other data
    return PoolSpec(dataset, real.split, real.num_classes, real.channels, real.image_size, config.net, config.net_options(), training, config.seed)


@torch.no_grad()
def teacher_soft_labels(teacher: torch.nn.Module, images: torch.Tensor, mean, std, device, batch_size: int = 500) -> torch.Tensor:
    """Teacher probabilities on the decoded images (float32 [N,K])."""
    teacher.eval()
    chunks = [torch.softmax(teacher(normalise(images[i : i + batch_size].to(device), mean, std)).float(), 1).cpu()
              for i in range(0, len(images), batch_size)]
    probabilities = torch.cat(chunks)
    if not torch.isfinite(probabilities).all():
        raise UserError("the teacher's outputs are not finite (NaN or inf): its weights are broken; pass another --soft-labels file or pool")
    return probabilities


def check_teacher(path: str, real: RealData, device: torch.device, flag: str = "--soft-labels") -> None:
    """A network file given by `flag` fits the data (classes, channels, image size) and gives finite outputs on real images."""
    spec = member_spec(path)
    theirs, ours = (spec.num_classes, spec.channels, tuple(spec.image_size)), (real.num_classes, real.channels, real.image_size)
    if theirs != ours:
        describe = "{} classes, {} channels, {}x{} images".format
        raise UserError(f"{flag} {path}: the network is for {describe(*theirs[:2], *theirs[2])} ({spec.dataset}), "
                        f"but {real.source} has {describe(*ours[:2], *ours[2])}; pass a member file of a pool trained on this data")
    teacher_soft_labels(load_member(path, device), real.floats(torch.arange(min(len(real), 64))), real.mean, real.std, device)


def pool_folder_for(config: DistillConfig, spec: PoolSpec) -> Path:
    if config.pool_folder:
        return Path(config.pool_folder)
    return Path("pools") / f"{Path(spec.dataset.rstrip('/')).name}-{spec.net}-{config.pool_size}x{config.pool_epochs}ep-{spec.digest()}"


def teacher_of(soft_labels: str, pool_folder: Path) -> str:
    """The teacher file(s) a `soft_labels` setting names: the pool's first trained member, all of them, its teacher, or a file."""
    if soft_labels not in SOFT_LABEL_SOURCES:
        return soft_labels  # a file: no pool needed (a method without a pool has no pool folder)
    named = {"pool": pool_folder / "member-000-trained.safetensors", "ensemble": pool_folder, "teacher": pool_folder / TEACHER_FILE}
    return str(named.get(soft_labels, soft_labels))


def prepare(config: DistillConfig, device: torch.device, progress: bool = True, world: World | None = None,
            check_data=None, with_pool: bool | None = None) -> tuple[RealData, RealData, Pool | None, Path | None]:
    """Load the train and test splits and build (or reuse) the extractor pool, where `with_pool` asks for it (default: where
    the method or the soft labels use one; else the pool and its folder are None).

    `check_data(real)` runs between the two, so that a run that cannot start trains no pool.
    Under torchrun rank 0 loads first (it fills `datasets`' cache the others then read) and the
    ranks train the pool's missing members together.
    """
    world = world or World()
    real, test = world.main_first(lambda: load_splits(config))
    if check_data is not None:
        check_data(real)
    if not (uses_pool(config) if with_pool is None else with_pool):
        return real, test, None, None
    spec = pool_spec(config, real)
    folder = pool_folder_for(config, spec)
    return real, test, build_or_load_pool(folder, spec, config.pool_size, real, test, device, progress and world.is_main, world,
                                         batched=config.batched_pool), folder


def uses_pool(config: DistillConfig) -> bool:
    """Whether a run of `config` needs the pool: its method matches through one, or its soft labels come from one."""
    return method_class(config.method).uses_pool or config.soft_labels in SOFT_LABEL_SOURCES[1:]


def load_splits(config: DistillConfig) -> tuple[RealData, RealData]:
    """The train split (memory-mapped, or streamed into per-class reservoirs, as the config says) and the test split
    (streamed whole when the train split is streamed). With `config.holdout`, the train split less its held-out images
    and those images (`RealData.holdout_split`) instead: the pool, the distillation and the evaluation never see the test split."""
    streaming = config.stream_per_class is not None
    if config.holdout and streaming:
        raise UserError("--holdout carves the same images out of the whole train split every time; a streamed sample (--stream-per-class) "
                        "differs by seed, so it cannot: drop one of them")
    train = config.source.load(config.split, memory_mapped=config.memory_mapped, streaming=streaming, per_class=config.stream_per_class,
                               seed=config.seed)
    if config.holdout:
        return train.holdout_split(config.holdout)
    return train, config.source.load(config.test_split, streaming=streaming)


def distill(config: DistillConfig, out: str | Path, device: torch.device, resume: bool | str = False, progress: bool = True) -> dict:
    """The whole job: data, pool (where used), the method's loop, soft labels, evaluation; writes the run folder.

    Folder: config.json (resolved settings), log.jsonl, checkpoint.pt, synthetic.safetensors,
    preview.png and eval.json. The set file appears only once everything before it succeeded.
    `resume`: True continues the run in `out`; "auto" continues it if it has a checkpoint and starts it otherwise.
    Under torchrun the classes are sharded across ranks (see `condense.distributed`), the ranks
    train the pool's missing members and the evaluation runs together, and rank 0 alone writes.
    """
    out = Path(out)
    teacher_file = config.soft_labels not in SOFT_LABEL_SOURCES
    if teacher_file:
        member_spec(config.soft_labels)  # readable, and a pool member: checked before anything is loaded
    eval_config = eval_preset(config.eval_preset)
    device = local_device(device)
    world = init_world(device)
    with claim_run_folder(out, world):
        resume = check_run_folder(out, config, resume)
        checkpoint = read_checkpoint(out / "checkpoint.pt") if resume else None
        world.barrier()  # every rank has seen the folder as it was before rank 0 writes into it

        def check_data(real: RealData) -> None:
            check_class_sizes(config, real)
            if config.init_from:
                canvases_of(config, real)  # a set that cannot start the run is refused before the pool is trained
            if teacher_file:
                check_teacher(config.soft_labels, real, device)

        real, test, pool, pool_folder = prepare(config, device, progress, world, check_data)
        distiller = make_method(config, real, pool, device, world=world)
        if resume:
            load_checkpoint(distiller, out / "checkpoint.pt", checkpoint)
        if world.is_main:
            write_json(out / "config.json", {**config.to_dict(), "resolved_data": real.source, "resolved_pool_folder": pool_folder and str(pool_folder)})
        seconds = run_distillation(distiller, out, progress)
        synthetic = distiller.synthetic_set()  # collective under torchrun: gathers every rank's classes
        if config.soft_labels == "teacher":  # trained once per pool folder (first by each machine's first process)
            world.main_first(lambda: build_or_load_teacher(pool_folder, pool.spec, real, device, progress and world.is_main))
        if config.soft_labels != "none":  # stored for users of the file; evaluation asks the teacher on each augmented batch
            eval_config.teacher = teacher_of(config.soft_labels, pool_folder)
            synthetic.soft_labels = teacher_soft_labels(load_teacher(eval_config.teacher, device), synthetic.images, real.mean, real.std, device)
        evaluation = {}
        if config.eval_runs != 0:
            if config.eval_runs is not None:
                eval_config.runs = config.eval_runs
            evaluation = evaluate_set(synthetic, test, eval_config, device, progress and world.is_main, world)
            synthetic.evaluation = evaluation_summary(evaluation)
        if world.is_main:  # the set first: a run folder with eval.json or preview.png also has its set
            synthetic.save(out / "synthetic.safetensors")
            synthetic.save_preview(out / "preview.png")
            if evaluation:
                write_json(out / "eval.json", evaluation)
        return {"set": synthetic, "seconds_per_iteration": seconds, "evaluation": evaluation, "out": out}
