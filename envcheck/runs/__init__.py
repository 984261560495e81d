"""Running a matrix: stacks through render, build, probe and diagnosis on one daemon (pipeline), and on many hosts at
once with a registry between them (fleet)."""
