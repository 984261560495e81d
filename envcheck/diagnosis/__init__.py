"""Why the GPU is (or will be) not used: the rules over a probe's facts (diagnose), the log reader (logread) and
`explain` built on it, the script scan (`doctor --script`), `doctor` on this host, and the predictions from knowledge
alone (lint, plan)."""
