"""Copy one measured cell between protocols.py tables (the same set and protocol): copy_cell.py FROM TO ROW COLUMN."""
import json
import sys

source, target, row, column = sys.argv[1:]
cell = json.load(open(f"{source}/figures.json"))["cells"][row][column]
figures = json.load(open(f"{target}/figures.json"))
figures["cells"].setdefault(row, {})[column] = {**cell, "from": f"{source}/figures.json"}
figures["rows"] = list(dict.fromkeys(figures["rows"] + [row]))
json.dump(figures, open(f"{target}/figures.json", "w"), indent=1)
