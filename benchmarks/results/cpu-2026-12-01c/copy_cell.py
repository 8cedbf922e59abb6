"""Copy one measured cell between protocols.py tables (the same set and protocol): copy_cell.py FROM TO ROW COLUMN."""
import json
import sys
from pathlib import Path

source, target, row, column = sys.argv[1:]
cell = json.loads(Path(source, "figures.json").read_text())["cells"][row][column]
figures = json.loads(Path(target, "figures.json").read_text())
figures["cells"].setdefault(row, {})[column] = {**cell, "from": f"{source}/figures.json"}
figures["rows"] = list(dict.fromkeys(figures["rows"] + [row]))
Path(target, "figures.json").write_text(json.dumps(figures, indent=1))
