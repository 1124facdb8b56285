#!/usr/bin/env python3
"""Open anomstream-web's page in headless Chromium, change the data, watch the page change.

    browser_watch.py URL WORKDIR MACHINE COMMAND...

Starts chromium (flags for a non-root test user, fresh profile in WORKDIR) with the DevTools
protocol on a pipe-free loopback port, waits until the page script has drawn the chart at least
once, records the attack values the page shows for MACHINE (the data-attacks of its chart points)
and the table's rows, runs COMMAND (which changes the database), then polls the page until those
values change (deadline 40 s). Prints JSON lines: {"phase": "before"|"after", ...}. Exit status 1
if the page never drew or never changed. Chromium is always killed before exit.
"""
import base64
import json
import os
import re
import socket
import struct
import subprocess
import sys
import time
import urllib.request

FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--no-first-run',
         '--remote-debugging-port=0', '--remote-allow-origins=*', '--window-size=1200,1000']


class WebSocket:
    """The smallest client the DevTools protocol needs: text frames, masked, no extensions."""

    def __init__(self, url):
        m = re.match(r'ws://([^/:]+):(\d+)(/.*)', url)
        self.sock = socket.create_connection((m.group(1), int(m.group(2))), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(('GET %s HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\n'
                           'Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n'
                           'Sec-WebSocket-Version: 13\r\n\r\n'
                           % (m.group(3), m.group(1), m.group(2), key)).encode())
        head = b''
        while b'\r\n\r\n' not in head:
            b = self.sock.recv(1)
            if not b:
                raise OSError('websocket handshake failed')
            head += b
        if b' 101 ' not in head.split(b'\r\n')[0]:
            raise OSError('websocket handshake refused: %r' % head[:200])
        self.next_id = 0

    def _recv_exact(self, n):
        out = b''
        while len(out) < n:
            b = self.sock.recv(n - len(out))
            if not b:
                raise OSError('websocket closed')
            out += b
        return out

    def send(self, obj):
        data = json.dumps(obj).encode()
        hdr = bytes([0x81])
        n = len(data)
        if n < 126:
            hdr += bytes([0x80 | n])
        elif n < 65536:
            hdr += bytes([0x80 | 126]) + struct.pack('>H', n)
        else:
            hdr += bytes([0x80 | 127]) + struct.pack('>Q', n)
        mask = os.urandom(4)
        self.sock.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def recv(self):
        msg = b''
        while True:
            b0, b1 = self._recv_exact(2)
            n = b1 & 0x7f
            if n == 126:
                n = struct.unpack('>H', self._recv_exact(2))[0]
            elif n == 127:
                n = struct.unpack('>Q', self._recv_exact(8))[0]
            payload = self._recv_exact(n)
            if b0 & 0x0f in (0x1, 0x0):
                msg += payload
                if b0 & 0x80:
                    return json.loads(msg)

    def call(self, method, **params):
        self.next_id += 1
        self.send({'id': self.next_id, 'method': method, 'params': params})
        while True:
            m = self.recv()
            if m.get('id') == self.next_id:
                if 'error' in m:
                    raise OSError('%s: %s' % (method, m['error']))
                return m.get('result', {})


PROBE = r'''JSON.stringify({
  refreshes: Number(document.body.dataset.refreshes || 0),
  status: (document.getElementById('status') || {}).textContent,
  points: Array.from(document.querySelectorAll('#chart g.series[data-machine="%s"] circle.point'))
            .map(c => [c.getAttribute('data-window-start'), Number(c.getAttribute('data-attacks'))]),
  series: document.querySelectorAll('#chart g.series path').length,
  rows: Array.from(document.querySelectorAll('#attacks-body tr'))
            .map(tr => Array.from(tr.cells).map(td => td.textContent))
})'''


def main():
    url, workdir, machine, command = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    profile = os.path.join(workdir, 'profile')
    os.makedirs(profile, exist_ok=True)
    log = open(os.path.join(workdir, 'chromium.log'), 'w+')
    proc = subprocess.Popen(['chromium'] + FLAGS + ['--user-data-dir=' + profile, url],
                            stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        ws_url = None
        while ws_url is None and time.monotonic() < deadline:
            time.sleep(0.2)
            log.seek(0)
            m = re.search(r'DevTools listening on (ws://\S+)', log.read())
            if m:
                ws_url = m.group(1)
        if ws_url is None:
            sys.exit('browser_watch: chromium did not start (see chromium.log)')
        port = re.match(r'ws://[^:]+:(\d+)/', ws_url).group(1)
        page = None
        while page is None and time.monotonic() < deadline:
            targets = json.load(urllib.request.urlopen('http://127.0.0.1:%s/json/list' % port, timeout=10))
            page = next((t for t in targets if t.get('type') == 'page' and t.get('url', '').startswith(url)), None)
            if page is None:
                time.sleep(0.2)
        if page is None:
            sys.exit('browser_watch: no page target for ' + url)
        ws = WebSocket(page['webSocketDebuggerUrl'])

        def probe():
            # While the page is still loading the expression may throw: no state yet.
            r = ws.call('Runtime.evaluate', expression=PROBE % machine, returnByValue=True)
            v = r.get('result', {}).get('value')
            return json.loads(v) if isinstance(v, str) else None

        state = None
        while time.monotonic() < deadline:
            state = probe()
            if state and state['refreshes'] >= 1:
                break
            time.sleep(0.2)
        if not state or state['refreshes'] < 1:
            sys.exit('browser_watch: the page never drew: %r' % (state,))
        state['phase'] = 'before'
        print(json.dumps(state), flush=True)
        shot = ws.call('Page.captureScreenshot', format='png')
        with open(os.path.join(workdir, 'before.png'), 'wb') as f:
            f.write(base64.b64decode(shot['data']))

        subprocess.run(command, check=True, timeout=60)

        deadline = time.monotonic() + 40
        before = (state['points'], state['rows'])
        while time.monotonic() < deadline:
            time.sleep(0.3)
            now = probe()
            if now and (now['points'], now['rows']) != before:
                now['phase'] = 'after'
                print(json.dumps(now), flush=True)
                shot = ws.call('Page.captureScreenshot', format='png')
                with open(os.path.join(workdir, 'after.png'), 'wb') as f:
                    f.write(base64.b64decode(shot['data']))
                return
        sys.exit('browser_watch: the page did not change within 40 s')
    finally:
        try:
            os.killpg(proc.pid, 9)
        except OSError:
            pass
        proc.wait(timeout=30)


if __name__ == '__main__':
    main()
