"""Small helpers shared by the lab modules: commands with timeouts, files, pid files, locks, waiting."""

import contextlib
import fcntl
import os
import shlex
import signal
import subprocess
import time


class LabError(Exception):
    """A clear, user-facing failure. The CLI prints it and exits 1; nothing is changed on bad input."""


def _show(cmd):
    text = shlex.join(cmd)
    return text if len(text) <= 160 else text[:157] + '...'


def run(cmd, timeout=10, check=True, input=None, env=None):
    """Run a command to completion with a hard timeout; raise LabError with its stderr on failure.

    A command found stopped is continued: a forking `nsenter --pid` (container.execute) stops itself when its child
    is stopped - which a host that shuts down does to every process in it (SIGSTOP, SIGTERM, SIGCONT) - and, left
    stopped, never reaps that child, so the host's systemd waits 90 s for the zombie before rebooting (CI saw it).
    Continued, nsenter continues its child and reaps it.
    """
    deadline = time.monotonic() + timeout
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    except FileNotFoundError as e:
        raise LabError(f'{cmd[0]}: command not found (missing package?)') from e
    with proc:
        while True:
            try:
                out, err = proc.communicate(input, timeout=min(0.2, max(0.0, deadline - time.monotonic())))
                break
            except subprocess.TimeoutExpired as e:
                input = None  # sent once; communicate() goes on with the rest
                if time.monotonic() >= deadline:
                    proc.kill()
                    proc.communicate()
                    raise LabError(f'{_show(cmd)}: timed out after {timeout} s') from e
            if _stopped(proc.pid):
                os.kill(proc.pid, signal.SIGCONT)
    if check and proc.returncode != 0:
        detail = (err or out).strip()
        raise LabError(f'{_show(cmd)}: exit {proc.returncode}: {detail}')
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _stopped(pid):
    try:
        with open(f'/proc/{pid}/stat', encoding='utf-8') as f:
            return f.read().rsplit(')', 1)[1].split()[0] == 'T'
    except OSError:
        return False


def spawn_detached(cmd, log_path, pid_path, cwd=None, timeout=10, stdin=subprocess.DEVNULL, stdout=None):
    """Start a long-lived process that outlives the caller and return its pid.

    `setsid --fork` double-forks, so the process is re-parented to PID 1, which reaps it when it ends:
    neither the short-lived CLI nor a BMC that powers a host on is left with a zombie. The process
    writes its own pid file once it is ready, which is what we wait for.
    """
    remove(pid_path)
    with open(log_path, 'ab') as log:
        run_detached = subprocess.run(['setsid', '--fork'] + cmd, stdin=stdin, stdout=stdout or log, stderr=log,
                                      timeout=timeout, check=False, cwd=cwd)
    if run_detached.returncode != 0:
        raise LabError(f'{_show(cmd)}: could not start (see {log_path})')
    if not wait_until(lambda: read_pid(pid_path), timeout):
        raise LabError(f'{_show(cmd)}: not ready after {timeout} s (see {log_path})')
    return read_pid(pid_path)


def wait_until(predicate, timeout, interval=0.05):
    """Poll predicate until it is truthy or timeout seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def read_text(path, default=None):
    try:
        with open(path, encoding='utf-8') as f:
            return f.read()
    except OSError:
        return default


def write_text(path, text, mode=0o644):
    """Atomic write (temp file + rename), creating the parent directory."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f'{path}.tmp{os.getpid()}'
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, 'w', encoding='utf-8') as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def remove(path):
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def read_pid(path):
    """The pid in a pid file if that process is alive, else None."""
    text = read_text(path, '').strip()
    if not text.isdigit():
        return None
    pid = int(text)
    return pid if pid_alive(pid) else None


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes (PID 1 reaps it a little later).
    status = read_text(f'/proc/{pid}/stat', '')
    return bool(status) and status.rsplit(')', 1)[-1].split()[0] != 'Z'


def kill_pid_file(path, first_signal=signal.SIGTERM, timeout=5):
    """Signal the process of a pid file (SIGTERM), SIGKILL it if it lingers, and remove the file."""
    pid = read_pid(path)
    if pid:
        terminate(pid, timeout, first_signal)
    remove(path)


def terminate(pid, timeout=5, first_signal=signal.SIGTERM):
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, first_signal)
        if not wait_until(lambda: not pid_alive(pid), timeout):
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not pid_alive(pid), timeout)


@contextlib.contextmanager
def locked(path, timeout=60):
    """An exclusive flock on path, waiting at most timeout seconds for it."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if not wait_until(lambda: _try_lock(fd), timeout):
            raise LabError(f'{path}: still locked by another lab command after {timeout} s')
        yield
    finally:
        os.close(fd)


def _try_lock(fd):
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def is_mountpoint(path):
    """From the mount table: os.path.ismount misses a bind mount from the same filesystem (the store's)."""
    return bool(mount_stack('self', path))


def mount_stack(pid, target):
    """Mounts on target in the mount namespace of pid, bottom first, as (fstype, options) pairs."""
    found = []
    for line in read_text(f'/proc/{pid}/mountinfo', '').splitlines():
        fields = line.split()
        if fields[4] == target:
            found.append((fields[fields.index('-') + 1], fields[5]))
    return found


def with_pid_file(cmd, pid_path):
    """Wrap cmd so that it writes its own pid file (a shell writes $$, then execs cmd under the same pid)."""
    return ['sh', '-c', 'echo $$ > "$0" && exec "$@"', pid_path] + list(cmd)


def mounts_under(prefix):
    """Mount points at or below prefix, deepest first (the order to unmount them)."""
    found = []
    for line in read_text('/proc/self/mountinfo', '').splitlines():
        point = line.split()[4].encode().decode('unicode_escape')
        if point == prefix or point.startswith(prefix.rstrip('/') + '/'):
            found.append(point)
    return sorted(set(found), key=lambda p: p.count('/'), reverse=True)
