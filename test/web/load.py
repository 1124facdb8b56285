#!/usr/bin/env python3
"""Bounded abuse of anomstream-web on loopback: many concurrent clients and malformed requests.

    load.py HOST PORT [CLIENTS]           mixed valid and malformed clients, all at once
    load.py --idle HOST PORT N TIMEOUT_S PID
                                          hold N idle connections; report how many sockets the
                                          server process PID holds, then wait until it serves again

Every socket has a timeout and every loop a deadline, so the script ends within about a minute
whatever the server does. Prints key=value lines; exit status 0 unless the script itself fails.
"""
import os
import socket
import sys
import threading
import time

TIMEOUT = 20.0


def exchange(host, port, payload, read=True, pause=None):
    """Send payload (bytes or a list of chunks with pauses); return the response bytes."""
    s = socket.create_connection((host, port), timeout=TIMEOUT)
    try:
        chunks = payload if isinstance(payload, list) else [payload]
        for c in chunks:
            s.sendall(c)
            if pause:
                time.sleep(pause)
        if not read:
            return b''
        s.shutdown(socket.SHUT_WR)
        out = b''
        while len(out) < 4 * 1024 * 1024:
            b = s.recv(65536)
            if not b:
                break
            out += b
        return out
    finally:
        s.close()


def status_of(resp):
    try:
        return int(resp.split(b' ', 2)[1])
    except (IndexError, ValueError):
        return None


VALID = [
    b'GET /chart.svg HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    b'GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    b'GET /attacks.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    b'GET / HTTP/1.0\r\n\r\n',
    b'GET /healthz?x=1;DROP%20TABLE%20anomstream.potential_attacks HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
]

MALFORMED = [
    b'\x00\x01\x02garbage\r\n\r\n',
    b'GET\r\n\r\n',
    b'GET / HTTP/9.9\r\n\r\n',
    b'GET /' + b'a' * 70000 + b' HTTP/1.1\r\nHost: x\r\n\r\n',
    b'GET / HTTP/1.1\r\nHost: x\r\nX-Big: ' + b'b' * 100000 + b'\r\n\r\n',
    b'POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n' + b'c' * 5000,
    b'DELETE /chart.svg HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    b'GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    b'GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n',
    b'GET / HTTP/1.1\r\n' + b'H: v\r\n' * 3000 + b'\r\n',
    b'GET /metrics HTTP/1.1\r\nHost',      # truncated, then half-close
]


def mixed(host, port, clients):
    results = {'valid_ok': 0, 'valid_failed': 0, 'malformed_answered': 0,
               'malformed_closed': 0, 'errors': 0}
    lock = threading.Lock()
    start = threading.Barrier(clients, timeout=TIMEOUT)

    def client(i):
        kind = 'valid' if i % 2 == 0 else 'malformed'
        payload = VALID[(i // 2) % len(VALID)] if kind == 'valid' else MALFORMED[(i // 2) % len(MALFORMED)]
        try:
            start.wait()
        except threading.BrokenBarrierError:
            pass
        try:
            if kind == 'valid' and i % 10 == 4:
                # a slow but valid client: the request in small pieces
                resp = exchange(host, port, [payload[j:j + 8] for j in range(0, len(payload), 8)], pause=0.01)
            else:
                resp = exchange(host, port, payload)
            st = status_of(resp)
            with lock:
                if kind == 'valid':
                    results['valid_ok' if st == 200 else 'valid_failed'] += 1
                else:
                    results['malformed_answered' if st else 'malformed_closed'] += 1
        except OSError:
            with lock:
                results['valid_failed' if kind == 'valid' else 'malformed_closed'] += 1
                results['errors'] += 1

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.1, 60 - (time.monotonic() - t0)))
    results['unfinished'] = sum(t.is_alive() for t in threads)
    results['seconds'] = round(time.monotonic() - t0, 2)
    for k, v in results.items():
        print('%s=%s' % (k, v))


def server_sockets(pid):
    """Sockets the server process has open (its listening socket and libpq's included)."""
    n = 0
    for fd in os.listdir('/proc/%d/fd' % pid):
        try:
            if os.readlink('/proc/%d/fd/%s' % (pid, fd)).startswith('socket:'):
                n += 1
        except OSError:
            pass
    return n


def idle(host, port, n, timeout_s, pid):
    socks = []
    for _ in range(n):
        try:
            socks.append(socket.create_connection((host, port), timeout=TIMEOUT))
        except OSError:
            pass
    time.sleep(1.0)
    # Connections past the limit wait in the kernel's backlog (or are closed): the server
    # process itself never holds more than its limit.
    print('opened=%d server_sockets=%d' % (len(socks), server_sockets(pid)))
    deadline = time.monotonic() + timeout_s + 30
    served = False
    while time.monotonic() < deadline:
        try:
            if status_of(exchange(host, port, VALID[4])) == 200:
                served = True
                break
        except OSError:
            pass
        time.sleep(0.5)
    print('served_after_idle=%d' % served)
    for s in socks:
        s.close()


if __name__ == '__main__':
    if sys.argv[1] == '--idle':
        idle(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]))
    else:
        mixed(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 200)
