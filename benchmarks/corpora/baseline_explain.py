"""Issue 27: explain's score on the new corpus (before any change), split fixed by the URL's hash: held aside when
sha256(source) % 3 == 0 (decided before any case was run)."""
import hashlib, json, sys
from pathlib import Path
import yaml
sys.path.insert(0, "/work/main")
from envcheck.diagnosis.explain import ExplainOptions, explain

cases = []
for name in ("torch-github.yaml", "torch-elsewhere.yaml", "jax.yaml"):
    cases += yaml.safe_load((Path(__file__).parent / name).read_text())
score = {}
rows = []
for case in cases:
    held = int(hashlib.sha256(case["source"].encode()).hexdigest(), 16) % 3 == 0
    framework, version, driver, gpus = (*case["args"][:3], tuple(case["args"][3])) if case.get("args") else (None,) * 4
    try:
        found = explain(case["log"].splitlines(keepends=True), ExplainOptions(framework, version, driver, tuple(gpus or ())))
        codes = [d.code for d in found.diagnoses]
    except Exception as exc:  # a traceback is a failure of its own
        codes = [f"CRASH {type(exc).__name__}: {exc}"]
    right = codes[:1] == [case["cause"]]
    key = (case["framework"], "held" if held else "tune")
    score.setdefault(key, [0, 0])
    score[key][0] += right
    score[key][1] += 1
    rows.append({"source": case["source"], "framework": case["framework"], "held": held, "cause": case["cause"], "got": codes[:3], "right": right})
for key, (r, n) in sorted(score.items()):
    print(f"{key[0]:10} {key[1]}: {r}/{n} = {100*r/n:.0f}%")
Path(sys.argv[1] if len(sys.argv) > 1 else "/work/corpus27/baseline.json").write_text(json.dumps(rows, indent=1))
