"""From a stack to its build context: the Dockerfile from images/Dockerfile.j2 with the framework's hooks, the probe's
files and the content hash (dockerfile), and the beginnings several stacks share, built once first (shared)."""
