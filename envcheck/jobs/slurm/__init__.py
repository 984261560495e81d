"""`envcheck slurm render|submit|collect`: the matrix as Slurm job arrays, with the container runtime the cluster
has (Apptainer, Podman with CDI, Enroot/Pyxis or Charliecloud), and what the tasks left turned back into records.

render writes a directory the compute nodes can read (a shared file system):

- tasks.tsv: one row per stack × partition, `INDEX STACK PARTITION IMAGE FRAMEWORK PYTHON HOW` (tab-separated).
  A task's SLURM_ARRAY_TASK_ID picks its row, so no matrix value is ever pasted into a script: the scripts read
  them as data at run time and use them only in double quotes.
- probe.sbatch: the task script. Slurm gives a job one partition, so submit sends it once per partition, as an
  array of exactly that partition's indices. A task pulls its image by digest (a built stack's
  REGISTRY/NAME@sha256, pushed by `envcheck build --push`; an image stack's own reference), runs the probe with
  the runtime's GPU option and writes the probe's output and a status file under RESULTS/ARRAY_JOB_ID/INDEX/.
- merge.sbatch: submitted with --dependency=afterany on every array; runs `envcheck slurm collect`, which writes
  the table.
- probe/: the probe's files, mounted read-only at /opt/envcheck into images envcheck did not render.
- jobs.json: what submit and collect need (arrays per partition, the results directory, the matrix's hash).

Every value from the matrix or a flag reaches a script through shlex.quote or after validation here (partitions,
account, --time, --gres). What a task wrote is untrusted input (a job runs an image, on a file system others can
write): collect reads bounded amounts, accepts only the keys and shapes it expects, and keeps a cell only when the
task's row, stack and probe document agree with what render wrote; a task that wrote nothing gets its cell from
Slurm's accounting (sacct, or `scontrol show job` where the cluster keeps no accounting), saying why.

Each step is a module of its own, imported from where it is needed (this package re-exports nothing):
layout.py (the names the steps share), runtimes.py (the container runtimes' commands), render.py, submit.py,
accounting.py (Slurm's accounting) and collect.py.
"""
