"""Start and stop real cache daemons on free loopback ports, the way FOSHttpCache's test suite does.

Each daemon gets its configuration in a work directory, runs in the foreground in its own process group (so
it outlives nothing it should not and is stopped as a group), and is ready when its port answers; a daemon
that does not come up raises :class:`DaemonError` with the tail of its log. ``restart()`` empties the cache
(Varnish uses ``malloc`` storage, nginx's cache directory is wiped, Redis runs without persistence).

A :class:`Daemon` can be saved as a dict (``to_dict``) and re-created in another process (``from_dict``),
which is what ``cachebot demo up`` / ``demo down`` rely on.

Running as root (the dev container):
- varnishd's default ``unix`` jail drops to the ``varnish``/``vcache`` users, who cannot read a VCL file or
  the ``-n`` directory under pytest's 0700 ``/tmp/pytest-of-root``. We pass ``-j none`` (no privilege
  separation) when running as root; for a non-root user the jail is a no-op anyway.
- nginx's workers would run as ``nobody`` and fail on the same 0700 directories: the config says
  ``user root root;`` (only honoured when the master is root).
- memcached refuses to run as root without ``-u root``.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LOOPBACK = "127.0.0.1"
SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")
INSTALL_HINT = "run `make test` (it installs varnish, varnish-modules, nginx, libnginx-mod-http-cache-purge, redis-server and memcached)"
NGINX_PURGE_MODULE = "/usr/lib/nginx/modules/ngx_http_cache_purge_module.so"


class DaemonError(RuntimeError):
    """A daemon could not be started or stopped; the message includes the tail of its log."""


class MissingBinary(DaemonError):
    """The daemon's program (or a module it needs) is not installed."""


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free right now on ``host`` (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def find_binary(name: str) -> str:
    """The path of program ``name`` (also looked up in the sbin directories); MissingBinary if absent."""
    found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN_DIRS))
    if not found:
        raise MissingBinary(f"{name} is not installed (not on PATH or in {', '.join(SBIN_DIRS)}); {INSTALL_HINT}")
    return found


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def render_template(name: str, **values: Any) -> str:
    """Fill ``{{placeholder}}`` markers in the template ``name`` shipped next to this module."""
    text = (HERE / name).read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", str(value))
    if "{{" in text:
        start = text.index("{{")
        raise ValueError(f"template {name}: placeholder {text[start:text.index('}}', start) + 2]} was not filled")
    return text


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes (its parent has not reaped it yet)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return True


def _pid_runs(pid: int, program: str) -> bool:
    """Whether ``pid`` is alive and still runs ``program`` (guards against a reused pid from a state file)."""
    if not _pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return True
    # Daemons rewrite their title ("nginx: master process /usr/sbin/nginx ...", "/usr/bin/redis-server 127.0.0.1:6379")
    return Path(program).name in cmdline


@dataclass
class Daemon:
    """One daemon process: ``port``/``url`` say where it listens; ``stop()``, ``restart()``, context manager."""

    name: str
    argv: list[str]
    port: int
    workdir: Path
    log_path: Path
    host: str = LOOPBACK
    scheme: str = "http"
    url_suffix: str = ""
    clear_paths: list[Path] = field(default_factory=list)  # emptied on restart (on-disk caches)
    make_dirs: list[Path] = field(default_factory=list)  # created before every start
    http_probe: tuple[str, str] | None = None  # (method, path) that must get an HTTP answer before "ready"
    env: dict[str, str] | None = None
    start_timeout: float = 20.0
    pid: int | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    # -- where ---------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.url_suffix}"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # -- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> Daemon:
        if self.running:
            return self
        if port_open(self.host, self.port):
            raise DaemonError(f"{self.name}: port {self.address} is already in use by another process")
        for directory in self.make_dirs:
            directory.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **(self.env or {})}
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== {time.strftime('%H:%M:%S')} start: {' '.join(self.argv)}\n".encode())
            log.flush()
            try:
                self._proc = subprocess.Popen(
                    self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    cwd=self.workdir, env=env, start_new_session=True,
                )
            except FileNotFoundError as exc:
                raise MissingBinary(f"{self.name}: cannot run {self.argv[0]}: {exc}; {INSTALL_HINT}") from None
        self.pid = self._proc.pid
        try:
            self._wait_ready()
        except BaseException:
            self._kill_group(timeout=5)
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise DaemonError(
                    f"{self.name} exited with status {self._proc.returncode} while starting on {self.address}.\n"
                    f"command: {' '.join(self.argv)}\nlog {self.log_path}:\n{self.log_tail()}"
                )
            if port_open(self.host, self.port) and self._probe():
                return
            if time.monotonic() > deadline:
                raise DaemonError(
                    f"{self.name} did not accept connections on {self.address} within {self.start_timeout:.0f}s.\n"
                    f"command: {' '.join(self.argv)}\nlog {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def _probe(self) -> bool:
        if self.http_probe is None:
            return True
        method, path = self.http_probe
        conn = http.client.HTTPConnection(self.host, self.port, timeout=1)
        try:
            conn.request(method, path, headers={"Host": "devstack.probe"})
            conn.getresponse().read()
            return True
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    @property
    def running(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return self.pid is not None and _pid_runs(self.pid, self.argv[0])

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the daemon's whole process group (TERM, then KILL after ``timeout``)."""
        self._kill_group(timeout)
        self.pid = None
        self._proc = None

    def _kill_group(self, timeout: float) -> None:
        pid = self.pid
        if pid is None:
            return
        if self._proc is None and not _pid_runs(pid, self.argv[0]):
            return  # loaded from a state file and already gone (or the pid now belongs to someone else)
        self._signal_group(pid, signal.SIGTERM)
        if not self._wait_gone(pid, timeout):
            self._signal_group(pid, signal.SIGKILL)
            if not self._wait_gone(pid, 5):
                raise DaemonError(f"{self.name} (pid {pid}) did not stop\nlog {self.log_path}:\n{self.log_tail()}")
        # Also reap any stragglers of the group (varnish's child, nginx's workers).
        self._signal_group(pid, signal.SIGKILL)

    @staticmethod
    def _signal_group(pid: int, sig: int) -> None:
        try:
            os.killpg(pid, sig)  # started with start_new_session: the group id is the pid
        except ProcessLookupError:
            pass
        except PermissionError:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None:
                if self._proc.poll() is not None:
                    return True
            elif not _pid_alive(pid):
                return True
            time.sleep(0.03)
        return False

    def restart(self) -> Daemon:
        """Stop, empty the cache, start again on the same port."""
        self.stop()
        self.clear()
        deadline = time.monotonic() + 5
        while port_open(self.host, self.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.start()

    def clear(self) -> None:
        for path in self.clear_paths:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
                path.mkdir(parents=True, exist_ok=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- persistence ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "argv": self.argv, "port": self.port, "workdir": str(self.workdir),
            "log_path": str(self.log_path), "host": self.host, "scheme": self.scheme,
            "url_suffix": self.url_suffix, "clear_paths": [str(p) for p in self.clear_paths],
            "make_dirs": [str(p) for p in self.make_dirs],
            "http_probe": list(self.http_probe) if self.http_probe else None, "env": self.env,
            "start_timeout": self.start_timeout, "pid": self.pid, "url": self.url,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Daemon:
        return cls(
            name=data["name"], argv=list(data["argv"]), port=int(data["port"]), workdir=Path(data["workdir"]),
            log_path=Path(data["log_path"]), host=data.get("host", LOOPBACK), scheme=data.get("scheme", "http"),
            url_suffix=data.get("url_suffix", ""), clear_paths=[Path(p) for p in data.get("clear_paths", [])],
            make_dirs=[Path(p) for p in data.get("make_dirs", [])],
            http_probe=tuple(data["http_probe"]) if data.get("http_probe") else None,  # type: ignore[arg-type]
            env=data.get("env"), start_timeout=float(data.get("start_timeout", 20.0)), pid=data.get("pid"),
        )


# -- the daemons -------------------------------------------------------------------------------------------
def _dir(path: Path) -> Path:
    path = Path(path).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def start_varnish(workdir: Path, backend_port: int, *, port: int | None = None, backend_host: str = LOOPBACK,
                  vcl_template: str = "varnish.vcl.tmpl", storage: str = "malloc,64m") -> Daemon:
    """varnishd in the foreground with the demo VCL (PURGE, PURGEKEYS/xkey, BAN), backend = the origin."""
    binary = find_binary("varnishd")
    workdir = _dir(Path(workdir) / "varnish")
    port = port or free_port()
    vcl = workdir / "default.vcl"
    vcl.write_text(render_template(vcl_template, backend_host=backend_host, backend_port=backend_port))
    argv = [
        binary, "-F",
        "-n", str(workdir / "instance"),
        "-a", f"{LOOPBACK}:{port}",
        "-T", "none",  # no management port: we restart instead of talking to the CLI
        "-s", storage,
        "-f", str(vcl),
        "-p", "default_grace=10",  # xkey.softpurge serves stale within grace
    ]
    if os.geteuid() == 0:
        # The default unix jail drops to varnish/vcache, who cannot read files under pytest's 0700 tmp dirs.
        argv += ["-j", "none"]
    return Daemon(
        name="varnish", argv=argv, port=port, workdir=workdir, log_path=workdir / "varnishd.log",
        http_probe=("PURGE", "/__devstack_ready"), start_timeout=30.0,
    ).start()


def start_nginx(workdir: Path, upstream_port: int, *, port: int | None = None,
                upstream_host: str = LOOPBACK) -> Daemon:
    """nginx as an edge cache in front of ``upstream_port`` with the ``/purge/<path>`` location."""
    binary = find_binary("nginx")
    if not Path(NGINX_PURGE_MODULE).exists():
        raise MissingBinary(f"the nginx cache purge module {NGINX_PURGE_MODULE} is not installed; {INSTALL_HINT}")
    prefix = _dir(Path(workdir) / "nginx")
    port = port or free_port()
    cache_dir = prefix / "cache"
    tmp_dirs = [prefix / "tmp" / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")]
    conf = prefix / "nginx.conf"
    conf.write_text(render_template(
        "nginx.conf.tmpl", prefix=prefix, cache_dir=cache_dir, listen_host=LOOPBACK, port=port,
        upstream_host=upstream_host, upstream_port=upstream_port,
    ))
    argv = [binary, "-p", f"{prefix}/", "-c", str(conf), "-e", str(prefix / "error.log"), "-g", "daemon off;"]
    return Daemon(
        name="nginx", argv=argv, port=port, workdir=prefix, log_path=prefix / "error.log",
        clear_paths=[cache_dir], make_dirs=[cache_dir, *tmp_dirs], http_probe=("GET", "/purge/__devstack_ready"),
    ).start()


def start_redis(workdir: Path, *, port: int | None = None) -> Daemon:
    """redis-server without persistence (a restart empties it); ``url`` is ``redis://127.0.0.1:PORT/0``."""
    binary = find_binary("redis-server")
    workdir = _dir(Path(workdir) / "redis")
    port = port or free_port()
    argv = [
        binary, "--port", str(port), "--bind", LOOPBACK, "--daemonize", "no", "--save", "", "--appendonly", "no",
        "--dir", str(workdir), "--logfile", "", "--protected-mode", "no",
    ]
    return Daemon(
        name="redis", argv=argv, port=port, workdir=workdir, log_path=workdir / "redis.log", scheme="redis",
        url_suffix="/0",
    ).start()


def start_memcached(workdir: Path, *, port: int | None = None) -> Daemon:
    """memcached on loopback TCP (no UDP); ``url`` is ``memcached://127.0.0.1:PORT``."""
    binary = find_binary("memcached")
    workdir = _dir(Path(workdir) / "memcached")
    port = port or free_port()
    argv = [binary, "-l", LOOPBACK, "-p", str(port), "-U", "0", "-m", "64"]
    if os.geteuid() == 0:
        argv += ["-u", "root"]  # memcached refuses to run as root otherwise
    return Daemon(
        name="memcached", argv=argv, port=port, workdir=workdir, log_path=workdir / "memcached.log",
        scheme="memcached",
    ).start()


def start_origin(workdir: Path, content_path: Path, *, port: int | None = None,
                 redis_url: str | None = None, python: str | None = None) -> Daemon:
    """The demo origin (``python -m agent.demo.origin``) as its own process."""
    workdir = _dir(Path(workdir) / "origin")
    port = port or free_port()
    argv = [python or sys.executable, "-m", "agent.demo.origin", "--port", str(port),
            "--content", str(Path(content_path).resolve())]
    if redis_url:
        argv += ["--redis", redis_url]
    project_root = str(HERE.parent.parent)
    pythonpath = os.pathsep.join(p for p in (project_root, os.environ.get("PYTHONPATH", "")) if p)
    return Daemon(
        name="origin", argv=argv, port=port, workdir=workdir, log_path=workdir / "origin.log",
        env={"PYTHONPATH": pythonpath, "PYTHONUNBUFFERED": "1"}, http_probe=("HEAD", "/__devstack_ready"),
    ).start()
