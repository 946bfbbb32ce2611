# Regenerates the pickle fixtures of decode's tests with Python 3's own
# pickle module: python3 gen.py (in this directory).
import os
import pickle

pts = [("a.b.c", (1700000000, 1.5)), ("x.y", (1700000001.0, 42)), ("uni.\u00e9t\u00e9", (1700000002, -3.25)),
       ("big", (1700000003, 2**70)), ("neg", (1700000004, -7))]
for proto in range(0, 6):
    open(f"points_p{proto}.pickle", "wb").write(pickle.dumps(pts, protocol=proto))
open("lists.pickle", "wb").write(pickle.dumps([["m.one", [1700000000, 1]], ["m.two", [1700000000, 2.5]]], protocol=2))


class Evil:
    def __reduce__(self):
        return (os.system, ("true",))


open("reduce.pickle", "wb").write(pickle.dumps([("a", (1, Evil()))], protocol=2))
open("dict.pickle", "wb").write(pickle.dumps({"a": 1}, protocol=2))
open("badpoints.pickle", "wb").write(pickle.dumps([("ok", (1700000000, 1)), ("nots", 1), (5, (1, 2)), ("s p", (1, 2)),
                                                   ("ok2", ("1700000001", "2.5")), ("nan", (float("nan"), 1))], protocol=2))
