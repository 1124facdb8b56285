#!/usr/bin/python3
"""Oracle for anomstream's scoring: Debian's python3-xgboost, outside anomstream's C code.

  score_oracle.py predict MODEL META_JSON ROWS_CSV OUT
      Encode ROWS_CSV (header = column names, \\N = NULL) with the model's features and text
      encodings from META_JSON ({"features": [...], "encoding": {...}}), following the rules in
      docs/score.md (numeric: float, NULL = NaN; dictionary: position in values, else NaN;
      one-hot: 1 at the value's position, 0 elsewhere, all NaN for NULL), load MODEL with
      xgboost.Booster and write one probability per line to OUT.
  score_oracle.py train ROWS_CSV FEATURES LABEL OUT_PREFIX
      Train a small binary:logistic model on numeric FEATURES (comma-separated) of ROWS_CSV,
      save OUT_PREFIX.json and OUT_PREFIX.ubj, and write its probabilities to OUT_PREFIX.pred.
Features must be plain column names.
"""
import csv
import json
import math
import sys

import numpy as np
import xgboost as xgb


def read_rows(path):
    with open(path, newline="") as f:
        r = csv.DictReader(f)
        return [{k: (None if v == "\\N" else v) for k, v in row.items()} for row in r]


def encode(rows, features, encoding):
    cols = []
    for feat in features:
        enc = encoding.get(feat)
        if enc is None:
            cols.append(np.array([math.nan if r[feat] is None else float(r[feat]) for r in rows],
                                 dtype=np.float64)[:, None])
            continue
        values = enc["values"]
        pos = {v: i for i, v in enumerate(values)}
        if enc["kind"] == "dictionary":
            cols.append(np.array([math.nan if r[feat] is None or r[feat] not in pos
                                  else pos[r[feat]] for r in rows], dtype=np.float64)[:, None])
        else:
            block = np.zeros((len(rows), len(values)))
            for i, r in enumerate(rows):
                if r[feat] is None:
                    block[i, :] = math.nan
                elif r[feat] in pos:
                    block[i, pos[r[feat]]] = 1.0
            cols.append(block)
    return np.hstack(cols).astype(np.float32)


def main():
    if sys.argv[1] == "predict":
        model, meta, rows_csv, out = sys.argv[2:6]
        meta = json.load(open(meta))
        rows = read_rows(rows_csv)
        x = encode(rows, meta["features"], meta["encoding"])
        b = xgb.Booster(model_file=model)
        b.set_param({"nthread": 1})
        p = b.predict(xgb.DMatrix(x, missing=math.nan))
        with open(out, "w") as f:
            f.write("".join("%.17g\n" % float(v) for v in p))
    elif sys.argv[1] == "train":
        rows_csv, features, label, prefix = sys.argv[2:6]
        rows = read_rows(rows_csv)
        features = features.split(",")
        x = encode(rows, features, {})
        y = np.array([float(r[label]) for r in rows])
        b = xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1,
                       "tree_method": "hist", "seed": 3}, xgb.DMatrix(x, label=y, missing=math.nan), 15)
        b.save_model(prefix + ".json")
        b.save_model(prefix + ".ubj")
        p = b.predict(xgb.DMatrix(x, missing=math.nan))
        with open(prefix + ".pred", "w") as f:
            f.write("".join("%.17g\n" % float(v) for v in p))
    else:
        sys.exit("usage: score_oracle.py predict|train ...")


if __name__ == "__main__":
    main()
