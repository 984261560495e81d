"""A real single-node Slurm cluster for the tests marked `slurm`: Debian's munge and slurm-wlm (slurmctld, slurmd)
started as root in a temporary directory with a generated slurm.conf, torn down after.

The node is this host (NodeName = `hostname -s`), in two partitions, with no GPUs declared (the tasks run a fake
probe; see tests/test_slurm.py). With accounting=True it also starts a MariaDB server of its own (mariadbd on a
free port of 127.0.0.1, its data in the temporary directory) and slurmdbd on it, so sacct answers as on a
production cluster; without, sacct says "Slurm accounting storage is disabled" and `envcheck slurm collect` reads
`scontrol show job`, which knows jobs for MinJobAge after they end (an hour here). Readiness is polled (sinfo until
the node is idle, sacctmgr until slurmdbd answers), never waited for by a fixed sleep.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sinfo", "sbatch")
ACCOUNTING = ("mariadbd", "mariadb-install-db", "mariadb", "slurmdbd", "sacctmgr")
PARTITIONS = ("debug", "second")


def missing() -> str | None:
    """Why a cluster cannot be started here (None: it can)."""
    absent = [d for d in DAEMONS if shutil.which(d) is None and not Path(f"/usr/sbin/{d}").exists()]
    if absent:
        return f"{', '.join(absent)} not installed (apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "slurmd must run as root to start jobs as their user"
    return None


def accounting_missing() -> str | None:
    """Why a cluster with accounting cannot be started here (None: it can)."""
    absent = [d for d in ACCOUNTING if shutil.which(d) is None and not Path(f"/usr/sbin/{d}").exists()]
    return f"{', '.join(absent)} not installed (apt-get install mariadb-server slurmdbd)" if absent else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _binary(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


@dataclass
class SlurmCluster:
    root: Path
    node: str = field(default_factory=lambda: socket.gethostname().split(".")[0])
    accounting: bool = False  # slurmdbd on a MariaDB of its own, so sacct works
    started: list[Path] = field(default_factory=list)  # pid files of what this fixture started
    db_port: int = field(default_factory=lambda: _free_port())
    dbd_port: int = field(default_factory=lambda: _free_port())

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """What the Slurm clients (and envcheck, through them) need to reach this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    def write_conf(self) -> None:
        r = self.root
        for sub in ("state", "spool", "munge"):
            (r / sub).mkdir(parents=True, exist_ok=True)
        (r / "munge").chmod(0o711)  # munged's clients need to reach its socket
        key = r / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        partitions = "\n".join(
            f"PartitionName={p} Nodes={self.node} MaxTime=INFINITE State=UP" + (" Default=YES" if i == 0 else "")
            for i, p in enumerate(PARTITIONS)
        )
        self.conf.write_text(
            f"""\
ClusterName=envchecktest
SlurmctldHost={self.node}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={r}/munge/munge.socket
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmctldLogFile={r}/slurmctld.log
SlurmdLogFile={r}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
{self.accounting_conf()}MpiDefault=none
ReturnToService=2
MinJobAge=3600
OverTimeLimit=0
KillWait=2
SlurmdTimeout=6
SchedulerType=sched/backfill
DefMemPerCPU=64
NodeName={self.node} CPUs=16 RealMemory=4096 State=UNKNOWN
{partitions}
"""
        )

    def accounting_conf(self) -> str:
        if not self.accounting:
            return "JobAcctGatherType=jobacct_gather/none\nAccountingStorageType=accounting_storage/none\n"
        return (
            "JobAcctGatherType=jobacct_gather/linux\n"
            "AccountingStorageType=accounting_storage/slurmdbd\n"
            f"AccountingStorageHost={self.node}\n"
            f"AccountingStoragePort={self.dbd_port}\n"
            # the munge socket for slurmdbd connections (AuthInfo's is for the cluster's own)
            f"AccountingStoragePass={self.root}/munge/munge.socket\n"
        )

    def start_accounting(self, env: dict[str, str], deadline: float) -> None:
        """MariaDB with a database user for slurmdbd, then slurmdbd (its slurmdbd.conf beside slurm.conf)."""
        r = self.root
        (r / "db").mkdir()
        subprocess.run(
            ["mariadb-install-db", f"--datadir={r}/db", "--user=root", "--auth-root-authentication-method=normal"],
            check=True,
            capture_output=True,
        )
        subprocess.Popen(
            [_binary("mariadbd"), f"--datadir={r}/db", "--user=root", f"--socket={r}/mysqld.sock",
             f"--port={self.db_port}", "--bind-address=127.0.0.1", f"--pid-file={r}/mysqld.pid",
             f"--log-error={r}/mysqld.log"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        self.until(lambda: (r / "mysqld.pid").exists() and (r / "mysqld.sock").exists(), deadline, "MariaDB")
        self.started.append(r / "mysqld.pid")
        password = os.urandom(12).hex()
        grant = (
            f"CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '{password}'; "
            "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
        )
        subprocess.run(["mariadb", f"--socket={r}/mysqld.sock", "-uroot", "-e", grant], check=True)
        dbd = r / "slurmdbd.conf"
        dbd.write_text(
            f"AuthType=auth/munge\nAuthInfo=socket={r}/munge/munge.socket\nDbdHost={self.node}\n"
            f"DbdPort={self.dbd_port}\nSlurmUser=root\nLogFile={r}/slurmdbd.log\nPidFile={r}/slurmdbd.pid\n"
            f"StorageType=accounting_storage/mysql\nStorageHost=127.0.0.1\nStoragePort={self.db_port}\n"
            f"StorageUser=slurm\nStoragePass={password}\nStorageLoc=slurm_acct_db\n"
        )
        dbd.chmod(0o600)  # slurmdbd refuses a configuration others can read
        subprocess.run([_binary("slurmdbd")], check=True, env=env, capture_output=True)
        self.started.append(r / "slurmdbd.pid")

        def answers() -> bool:
            shown = subprocess.run(["sacctmgr", "--noheader", "show", "cluster"], env=env, capture_output=True)
            return shown.returncode == 0

        self.until(answers, deadline, "slurmdbd to answer")

    def start(self, deadline: float = 60.0) -> None:
        self.write_conf()
        r = self.root
        munge = [
            _binary("munged"),
            "--force",
            f"--key-file={r}/munge/munge.key",
            f"--socket={r}/munge/munge.socket",
            f"--pid-file={r}/munge/munged.pid",
            f"--log-file={r}/munge/munged.log",
            f"--seed-file={r}/munge/seed",
        ]
        subprocess.run(munge, check=True, capture_output=True)
        self.started.append(r / "munge" / "munged.pid")
        env = {**os.environ, **self.env}
        if self.accounting:
            self.start_accounting(env, deadline)
        subprocess.run([_binary("slurmctld"), "-f", str(self.conf)], check=True, env=env, capture_output=True)
        self.started.append(r / "slurmctld.pid")
        subprocess.run([_binary("slurmd"), "-f", str(self.conf)], check=True, env=env, capture_output=True)
        self.started.append(r / "slurmd.pid")
        self.until(lambda: self.node_state() == "idle", deadline, "the node to be idle")

    def node_state(self) -> str:
        done = subprocess.run(
            ["sinfo", "--noheader", "--format=%t", "--partition", PARTITIONS[0]],
            capture_output=True,
            text=True,
            env={**os.environ, **self.env},
            check=False,
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    def until(self, condition: object, deadline: float, what: str) -> None:
        """Polls `condition` (a callable) until it holds; fails naming `what` and the daemons' logs otherwise."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if condition():  # type: ignore[operator]
                return
            time.sleep(0.2)
        logs = "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
            for p in (self.root / "slurmctld.log", self.root / "slurmd.log", self.root / "slurmdbd.log")
            if p.exists()
        )
        raise TimeoutError(f"waited {deadline:g} s for {what}\n{logs}")

    def cancel_all(self) -> None:
        """Cancels every job of this cluster (only this fixture's: its own slurmctld) and waits until none is left."""
        env = {**os.environ, **self.env}
        ids = subprocess.run(
            ["squeue", "--noheader", "--format=%i"], capture_output=True, text=True, env=env, check=False
        ).stdout.split()
        if ids:
            subprocess.run(["scancel", *ids], capture_output=True, env=env, check=False)

        def empty() -> bool:
            listed = subprocess.run(
                ["squeue", "--noheader", "--format=%i"], capture_output=True, text=True, env=env, check=False
            )
            return listed.returncode == 0 and not listed.stdout.strip()

        self.until(empty, 60, "every job to end")

    def set_node(self, state: str) -> None:
        """scontrol update of the node's state: DRAIN (no job starts there: new ones stay PENDING) or RESUME."""
        reason = ["Reason=envcheck test"] if state == "DRAIN" else []
        subprocess.run(
            ["scontrol", "update", f"NodeName={self.node}", f"State={state}", *reason],
            check=True,
            capture_output=True,
            env={**os.environ, **self.env},
        )

    def kill_slurmd(self) -> None:
        """slurmd dies (SIGKILL) under running jobs: the controller marks the node down after SlurmdTimeout."""
        os.kill(int((self.root / "slurmd.pid").read_text().split()[0]), signal.SIGKILL)

    def start_slurmd(self, deadline: float = 60.0) -> None:
        env = {**os.environ, **self.env}
        subprocess.run([_binary("slurmd"), "-f", str(self.conf)], check=True, env=env, capture_output=True)
        self.until(lambda: self.node_state() == "idle", deadline, "the node to be idle again")

    def job_processes(self) -> list[int]:
        """Processes left of this cluster's jobs once its daemons are stopped (a task's children that escaped
        scancel, steps orphaned by a killed slurmd): every process whose environment names this cluster's
        slurm.conf (jobs inherit it from sbatch), this test process aside."""
        mark = f"SLURM_CONF={self.conf}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                environment = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if mark in environment:
                found.append(int(entry.name))
        return sorted(found)

    def stop(self) -> None:
        """Stops what start started, by the pid files it wrote (slurmd first, munged last), after its jobs."""
        if self.started:
            with contextlib.suppress(TimeoutError):
                self.cancel_all()
        for pid_file in reversed(self.started):
            try:
                pid = int(pid_file.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            end = time.monotonic() + 15
            while time.monotonic() < end:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
        self.started.clear()
        for pid in self.job_processes():  # steps orphaned by a slurmd the tests killed
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
