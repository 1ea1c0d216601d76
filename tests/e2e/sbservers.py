"""Private servers for the fault tests: a PostgreSQL cluster, a Kafka broker
and a Redis of the test's own, which it may stop, kill and restart. The shared
servers (PostgreSQL :5432, Kafka :9092, what `make test` and other runs use)
are never touched.

    with PrivatePostgres() as pg, PrivateKafka() as kafka:
        env = {"DATABASE_URL": pg.url(), "KAFKA_BROKERS": kafka.brokers}
        pg.restart()              # pg_ctl stop -m fast, then start
        kafka.kill(); kafka.start()

Each server lives in a temp folder /tmp/sb-fault-<kind>-*, on a free port
outside Linux's ephemeral range (probed, so a port someone else holds is
skipped). It is stopped and its folder removed on close(), which `with`,
atexit and SIGTERM all reach. A test killed outright (SIGKILL: a CTest
timeout) cannot clean up: the folder records the owning pid, and the next
private server made on the machine stops the servers of owners that are gone
(reap_orphans)."""
import atexit
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
PREFIX = "sb-fault-"


def port_free(port):
    """Nothing listens on 127.0.0.1:port and we may bind it."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_ports(first, count=1, tries=200):
    """The first run of `count` consecutive free ports at or after `first`
    (keep `first` below 32768: Linux's ephemeral range starts there)."""
    for base in range(first, first + tries):
        if all(port_free(base + i) for i in range(count)):
            return base
    raise RuntimeError(f"no {count} free consecutive ports in {first}..{first + tries}")


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _as_postgres():
    """initdb and postgres refuse to run as root: run them as `postgres`."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]


def _pg_bindir():
    d = os.environ.get("SB_PG_BINDIR")
    if d:
        return d
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    if not dirs:
        raise RuntimeError("PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin")
    return dirs[-1]


def reap_orphans():
    """Stops the private servers whose test process is gone and removes their
    folders."""
    for d in glob.glob(os.path.join(tempfile.gettempdir(), PREFIX + "*")):
        try:
            owner = int(open(os.path.join(d, "owner")).read())
        except (OSError, ValueError):
            continue
        if _pid_alive(owner):
            continue
        if os.path.exists(os.path.join(d, "data", "postmaster.pid")):
            subprocess.run(_as_postgres() + [os.path.join(_pg_bindir(), "pg_ctl"), "stop", "-D",
                                             os.path.join(d, "data"), "-m", "immediate", "-w"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _kill_kafka_pidfile(os.path.join(d, "kafka.pid"))
        _kill_redis_pidfile(os.path.join(d, "redis.pid"))
        shutil.rmtree(d, ignore_errors=True)


def _kill_kafka_pidfile(path, sig=signal.SIGKILL, timeout=30):
    """Signals the broker whose pid is in `path` (if it is a live kafka.Kafka)
    and waits until it is gone. True if one was signalled."""
    try:
        pid = int(open(path).read())
        cmd = open(f"/proc/{pid}/cmdline", "rb").read()
    except (OSError, ValueError):
        return False
    if b"kafka.Kafka" not in cmd:
        return False
    os.kill(pid, sig)
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
        except OSError:
            break
        if state == "Z":
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
    return True


def _kill_redis_pidfile(path):
    """SIGKILLs the redis-server whose pid is in `path` (SIGCONT first: it may
    be stopped). True if one was signalled."""
    try:
        pid = int(open(path).read())
        cmd = open(f"/proc/{pid}/cmdline", "rb").read()
    except (OSError, ValueError):
        return False
    if b"redis-server" not in cmd:
        return False
    os.kill(pid, signal.SIGCONT)
    os.kill(pid, signal.SIGKILL)
    return True


_open = []


def _close_all():
    for s in list(_open):
        s.close()


def _on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # runs the finally blocks and atexit


atexit.register(_close_all)
if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
    signal.signal(signal.SIGTERM, _on_sigterm)


class _Private:
    kind = "x"

    def __init__(self):
        reap_orphans()
        self.dir = tempfile.mkdtemp(prefix=f"{PREFIX}{self.kind}-")
        os.chmod(self.dir, 0o755)
        with open(os.path.join(self.dir, "owner"), "w") as f:
            f.write(str(os.getpid()))
        _open.append(self)

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        if self in _open:
            _open.remove(self)
        self.shutdown()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, n=30):
        try:
            return "".join(open(self.log).readlines()[-n:])
        except OSError:
            return ""


class PrivatePostgres(_Private):
    """A PostgreSQL cluster (initdb, trust auth) on 127.0.0.1:port, no Unix
    socket, fsync off (a throwaway test cluster). synchronous_commit stays on:
    an immediate stop (as a crash) must not lose a transaction the client was
    told had committed (the WAL is written to the OS before the answer; only
    an OS crash, which no test makes, would lose it with fsync off)."""
    kind = "pg"

    def __init__(self, port=None):
        super().__init__()
        self.bin = _pg_bindir()
        self.port = port or free_ports(25432)
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "postgres.log")
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self._pg(["initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C",
                  "-N"])

    def _pg(self, args, check=True):
        return subprocess.run(_as_postgres() + [os.path.join(self.bin, args[0])] + args[1:], cwd="/",
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=check)

    def url(self, db="postgres"):
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def start(self):
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories= "
                "-c fsync=off -c full_page_writes=off -c max_connections=300")
        r = self._pg(["pg_ctl", "start", "-w", "-t", "60", "-D", self.data, "-l", self.log, "-o", opts],
                     check=False)
        if r.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {r.stdout}\n{self.log_tail()}")
        self.wait_ready()

    def stop(self, mode="fast"):
        """pg_ctl stop -m mode: "fast" terminates every session (each gets
        FATAL 57P01) and shuts down cleanly."""
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            self._pg(["pg_ctl", "stop", "-w", "-t", "60", "-D", self.data, "-m", mode], check=False)

    def restart(self, mode="fast"):
        self.stop(mode)
        self.start()

    def accepts(self):
        r = subprocess.run(["psql", self.url(), "-XAtqc", "SELECT 1"], capture_output=True, text=True,
                           env=dict(os.environ, PGCONNECT_TIMEOUT="3"))
        return r.returncode == 0 and r.stdout.strip() == "1"

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        while not self.accepts():
            if time.time() > deadline:
                raise RuntimeError(f"private PostgreSQL not answering on {self.port}\n{self.log_tail()}")
            time.sleep(0.1)

    def query(self, sql, db="postgres"):
        """Rows of `sql` (psql, unaligned, tab-separated) as lists of strings."""
        r = subprocess.run(["psql", self.url(db), "-XAtq", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"psql {db}: {r.stderr.strip()}")
        return [line.split("\t") for line in r.stdout.splitlines()]

    def shutdown(self):
        self.stop("immediate")


class PrivateKafka(_Private):
    """A single-node KRaft broker (deploy/local/kafka.sh with SB_KAFKA_PORT,
    SB_KAFKA_DIR) on 127.0.0.1:port, its controller on port + 1. Its data
    stays across kill()/start(), as a real broker's disk would."""
    kind = "kafka"

    def __init__(self, port=None):
        super().__init__()
        self.port = port or free_ports(29092, 2)
        self.brokers = f"127.0.0.1:{self.port}"
        self.log = os.path.join(self.dir, "kafka.log")
        self.pidfile = os.path.join(self.dir, "kafka.pid")

    def start(self, timeout=120):
        env = dict(os.environ, SB_KAFKA_PORT=str(self.port), SB_KAFKA_CONTROLLER_PORT=str(self.port + 1),
                   SB_KAFKA_DIR=self.dir, SB_KAFKA_HEAP=os.environ.get("SB_KAFKA_HEAP", "-Xmx384m"))
        r = subprocess.run([os.path.join(ROOT, "deploy", "local", "kafka.sh"), "start"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"kafka.sh start failed: {r.stdout}")
        deadline = time.time() + timeout
        while not self.answers():
            if time.time() > deadline:
                raise RuntimeError(f"private Kafka not answering on {self.port} after {timeout}s\n"
                                   f"{self.log_tail()}")
            if not os.path.exists(self.pidfile) or not _pid_alive(int(open(self.pidfile).read())):
                raise RuntimeError(f"private Kafka exited during start-up\n{self.log_tail()}")
            time.sleep(0.5)

    def answers(self):
        """A metadata request answered with a broker list (as infra.sh)."""
        if port_free(self.port):
            return False
        try:
            r = subprocess.run(["kcat", "-b", self.brokers, "-L", "-t", "__probe", "-m", "5",
                                "-X", "allow.auto.create.topics=false"], capture_output=True, text=True,
                               timeout=15)
        except subprocess.TimeoutExpired:
            return False
        return re.search(r"^ +[1-9][0-9]* brokers?:", r.stdout, re.M) is not None

    def kill(self, sig=signal.SIGKILL):
        """Stops the broker at once (SIGKILL: no clean shutdown) and waits
        until it is gone."""
        if not _kill_kafka_pidfile(self.pidfile, sig):
            raise RuntimeError("the private broker is not running")

    def shutdown(self):
        _kill_kafka_pidfile(self.pidfile)


class PrivateRedis(_Private):
    """redis-server on 127.0.0.1:port keeping nothing on disk (--save ''
    --appendonly no, as on many hosts): restart_empty() is a Redis that lost
    its memory; stop()/cont() stall it (SIGSTOP/SIGCONT)."""
    kind = "redis"

    def __init__(self, port=None):
        super().__init__()
        self.port = port or free_ports(26379)
        self.url = f"redis://127.0.0.1:{self.port}"
        self.log = os.path.join(self.dir, "redis.log")
        self.pidfile = os.path.join(self.dir, "redis.pid")
        self.proc = None

    def start(self, timeout=10):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir, "--logfile", self.log], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(self.pidfile, "w") as f:
            f.write(str(self.proc.pid))
        deadline = time.time() + timeout
        while True:
            try:
                if self.command("PING") == "PONG":
                    return
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"private redis-server on {self.port} did not start\n{self.log_tail()}")
            time.sleep(0.02)

    def command(self, *args, timeout=2.0):
        """One command over a fresh connection: the reply (simple string,
        integer or bulk string as str, nil as None). OSError when Redis does
        not answer or answers an error."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            out = f"*{len(args)}\r\n" + "".join(f"${len(str(a).encode())}\r\n{a}\r\n" for a in args)
            s.sendall(out.encode())
            f = s.makefile("rb")
            line = f.readline().decode().rstrip("\r\n")
            if not line:
                raise OSError("connection closed")
            if line[0] == "-":
                raise OSError(line)
            if line[0] == "$":
                n = int(line[1:])
                return None if n < 0 else f.read(n + 2)[:-2].decode()
            return line[1:]

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()

    def restart_empty(self):
        """kill -9, then a new redis-server on the same port: empty."""
        self.kill()
        self.start()

    def stop(self):
        self.proc.send_signal(signal.SIGSTOP)

    def cont(self):
        self.proc.send_signal(signal.SIGCONT)

    def shutdown(self):
        self.kill()
