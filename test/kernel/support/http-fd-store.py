#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""
A stand-in for what systemd does for kmesh.service across restarts, for the L7 restart test outside a booted
systemd: the notify socket ($NOTIFY_SOCKET, READY=1), the file-descriptor store (FDSTORE=1 with FDNAME and fds by
SCM_RIGHTS, FDSTOREREMOVE=1) and the hand-over of stored fds to the next process (fds from 3 on, LISTEN_FDS,
LISTEN_FDNAMES, LISTEN_PID). Node cannot receive fds on a datagram socket; Python can.

  http-fd-store.py NOTIFY_PATH LOG_PATH -- CMD...

Commands on stdin, one per line: "restart" (SIGTERM, wait for the exit, start again with the store), "crash"
(SIGKILL, then the same), "stop" (SIGTERM, wait, exit; the store is closed as systemd flushes it). Events on stdout,
one per line: "ready N" (the Nth process sent READY=1), "stored NAME COUNT", "removed NAME COUNT", "exited CODE".
"""
import array
import os
import resource
import signal
import socket
import subprocess
import sys
import threading

notify_path, log_path = sys.argv[1], sys.argv[2]
cmd = sys.argv[sys.argv.index("--") + 1 :]
# stored fds are moved above this before each start, out of the way of 3..3+n
HIGH = 4096
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 2 * HIGH + 1024)), hard))

store = []  # (name, fd), in the order stored
lock = threading.Lock()
out_lock = threading.Lock()
starts = 0


def say(line):
    with out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
if os.path.exists(notify_path):
    os.unlink(notify_path)
sock.bind(notify_path)


def receive():
    while True:
        msg, anc, _flags, _addr = sock.recvmsg(4096, socket.CMSG_SPACE(253 * 4))
        fds = []
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                a = array.array("i")
                a.frombytes(data[: len(data) - len(data) % a.itemsize])
                fds.extend(a)
        fields = dict(l.split("=", 1) for l in msg.decode().split("\n") if "=" in l)
        name = fields.get("FDNAME", "stored")
        if fields.get("FDSTORE") == "1":
            with lock:
                store.extend((name, fd) for fd in fds)
            say(f"stored {name} {len(fds)}")
        else:
            for fd in fds:
                os.close(fd)
        if fields.get("FDSTOREREMOVE") == "1":
            with lock:
                gone = [fd for n, fd in store if n == name]
                store[:] = [(n, fd) for n, fd in store if n != name]
            for fd in gone:
                os.close(fd)
            say(f"removed {name} {len(gone)}")
        if fields.get("READY") == "1":
            say(f"ready {starts}")


threading.Thread(target=receive, daemon=True).start()
log = open(log_path, "ab")


def start():
    global starts
    starts += 1
    with lock:
        items = list(store)
    high = [os.dup2(fd, HIGH + i, inheritable=False) for i, (_, fd) in enumerate(items)]
    env = dict(os.environ, NOTIFY_SOCKET=notify_path)
    for k in ("LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID"):
        env.pop(k, None)
    if items:
        env["LISTEN_FDS"] = str(len(items))
        env["LISTEN_FDNAMES"] = ":".join(n for n, _ in items)

    def move_fds():
        # in the child, after fork: the stored fds at 3.. (dup2 leaves them open across exec); Python's own fds
        # are close-on-exec
        for i, h in enumerate(high):
            os.dup2(h, 3 + i)
            os.close(h)

    # bash becomes the daemon: LISTEN_PID is the daemon's pid
    proc = subprocess.Popen(
        ["bash", "-c", 'export LISTEN_PID=$$; exec "$@"', "bash", *cmd],
        env=env,
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        close_fds=False,
        preexec_fn=move_fds,
    )
    for h in high:
        os.close(h)
    return proc


proc = start()
for line in sys.stdin:
    what = line.strip()
    if what in ("restart", "crash", "stop"):
        proc.send_signal(signal.SIGKILL if what == "crash" else signal.SIGTERM)
        code = proc.wait()
        say(f"exited {code}")
        if what == "stop":
            break
        proc = start()
if proc.poll() is None:
    proc.send_signal(signal.SIGTERM)
    say(f"exited {proc.wait()}")
with lock:
    for _, fd in store:
        os.close(fd)
sock.close()
if os.path.exists(notify_path):
    os.unlink(notify_path)
