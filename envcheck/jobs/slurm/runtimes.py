"""The container runtimes a task can use (Apptainer, Podman with CDI, Enroot/Pyxis, Charliecloud): how each
pulls an image and runs the probe in it with the job's GPUs, as bash lines render puts into the task script; in
one place, apart from the script around them (tests add a runtime of their own here)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Runtime:
    """How a task pulls an image and runs the probe in it with the GPUs Slurm gave the job: bash lines that use
    only the task's variables ($image, $python, $framework, $work, and the arrays mounts, quick and gpus expanded
    as ${a[@]+"${a[@]}"}, since bash before 4.4, still on older compute nodes, calls an empty array unbound under
    set -u), never a matrix value."""

    pull: str
    run: str
    mount: str  # the option (one word, with $PROBE_FILES or the task's copy) mounting the probe at /opt/envcheck
    image_prefix: str = ""  # how the runtime names a registry image (apptainer: docker://)
    inject: str = ""  # a step between pull and run that gives the image the host's GPU libraries


MOUNTS = '${mounts[@]+"${mounts[@]}"}'
PROBE = '"$python" /opt/envcheck/probe.py --framework "$framework" ${quick[@]+"${quick[@]}"}'
# The GPUs Slurm gave the job as CDI device names (SLURM_JOB_GPUS holds their indices), else every GPU.
CDI_GPUS = (
    "gpus=(--device nvidia.com/gpu=all)\n"
    'if [[ "${SLURM_JOB_GPUS:-}" =~ ^[0-9]+(,[0-9]+)*$ ]]; then\n'
    "  gpus=()\n"
    "  for gpu in ${SLURM_JOB_GPUS//,/ }; do\n"
    '    gpus+=(--device "nvidia.com/gpu=$gpu")\n'
    "  done\n"
    "fi\n"
)
RUNTIMES: dict[str, Runtime] = {
    # Apptainer: --nv binds the host's NVIDIA libraries and devices; --containall keeps $HOME, /tmp and the
    # environment of the login node out (as the Docker sandbox does), and a SIF file is made per task.
    "apptainer": Runtime(
        pull='apptainer pull --force "$work/image.sif" "$image"',
        run=f'apptainer exec --nv --containall --env HOME=/tmp {MOUNTS} "$work/image.sif" {PROBE}',
        mount='--bind="$PROBE_FILES:/opt/envcheck:ro"',
        image_prefix="docker://",
    ),
    # Podman with the NVIDIA Container Toolkit's CDI spec (nvidia-ctk cdi generate): the GPUs Slurm gave the job
    # (SLURM_JOB_GPUS, as CDI names nvidia.com/gpu=N; nvidia.com/gpu=all where Slurm names none); the rest is the
    # Docker sandbox's least privilege.
    "podman": Runtime(
        pull='podman pull --quiet "$image"',
        run='podman run --rm ${gpus[@]+"${gpus[@]}"} --network=none --cap-drop=ALL '
        "--security-opt=no-new-privileges --read-only --tmpfs=/tmp --env=HOME=/tmp --pids-limit=4096 "
        f'{MOUNTS} "$image" {PROBE}',
        mount='--volume="$PROBE_FILES:/opt/envcheck:ro"',
    ),
    # Enroot imports the image once per task; Pyxis' srun --container-image runs it in the job step, where
    # enroot's NVIDIA hook gives it the job's GPUs.
    "enroot": Runtime(
        pull='enroot import --output "$work/image.sqsh" "$image"',
        run=f'srun --ntasks=1 --container-image="$work/image.sqsh" --no-container-mount-home {MOUNTS} {PROBE}',
        mount='--container-mounts="$PROBE_FILES:/opt/envcheck:ro"',
        image_prefix="docker://",
    ),
    # Charliecloud: the image pulled into the task's own storage (--no-cache: no build cache, which is git and
    # wants a git identity, for storage removed at the end), unpacked to a directory (ch-convert has no --storage:
    # it finds the storage by $CH_IMAGE_STORAGE), the host's NVIDIA libraries injected with ch-fromhost --nvidia
    # (Charliecloud's GPU support), then run without the login node's home and /tmp, and in the image's own
    # environment (ch-run passes the job's whole environment into the container, ch-image's registry login
    # CH_IMAGE_USERNAME/CH_IMAGE_PASSWORD included, and applies the image's ENV, PATH with it, only when asked:
    # every variable unset, then --set-env with no argument sets the image's /ch/environment).
    # ch-run binds read-write (it has no read-only bind), and the container's root is the host's root for the
    # task's files, so the probe's files are bound from the task's own copy, never the shared render directory.
    "charliecloud": Runtime(
        pull='ch-image --no-cache --storage "$work/storage" pull "$image" && '
        'CH_IMAGE_STORAGE="$work/storage" ch-convert -i ch-image -o dir "$image" "$work/image" && '
        'mkdir -p "$work/image/opt/envcheck" && cp -R "$PROBE_FILES" "$work/probe"',
        inject='ch-fromhost --nvidia "$work/image"',
        run='ch-run --no-home --private-tmp --unset-env="*" --set-env --set-env=HOME=/tmp '
        f'{MOUNTS} "$work/image" -- {PROBE}',
        mount='--bind="$work/probe:/opt/envcheck"',
    ),
}
