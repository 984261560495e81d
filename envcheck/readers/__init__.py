"""Readers of what a machine has, standard library only: the driver and GPUs through NVML (nvml), ELF dynamic
sections and the CUDA fatbins in shared objects (elf). The host imports them (doctor, plan, the host's facts,
scripts/read_wheels.py); the probe carries them into every image beside probe.py (probe.PROBE_FILES), so each
reader exists once."""
