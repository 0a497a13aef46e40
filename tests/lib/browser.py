#!/usr/bin/python3
"""Drives Debian's chromium, headless, over the DevTools protocol on a pipe
(--remote-debugging-pipe: NUL-separated JSON on file descriptors 3 and 4), with nothing but
the Python standard library: no websocket client, no npm.

usage: browser.py --chromium BIN --profile DIR [--flag FLAG]... URL STEP...

Opens URL in a fresh profile (DIR, made empty by the caller), chromium given each FLAG too
(e.g. --host-resolver-rules=...), then runs the steps in order:
  wait:SECONDS:JS    polls the expression JS until it is true; fails after SECONDS
  eval:JS            prints the value of JS as one JSON line on stdout
  shot:WxH:FILE      sets the viewport to W x H, lets the page lay itself out, and saves a
                     PNG screenshot to FILE
An exception thrown in the page or an error on its console fails the run (exit 1) and is
printed on stderr, as is a step that fails; the browser is always closed."""

import base64
import json
import os
import subprocess
import sys
import time

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--remote-debugging-pipe", "--hide-scrollbars", "--mute-audio",
]


class Browser:
    def __init__(self, binary, profile, flags=()):
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()

        def fds():
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.log = open(os.path.join(profile, "chromium.log"), "w")
        self.proc = subprocess.Popen(
            [binary, *FLAGS, *flags, "--user-data-dir=" + profile, "about:blank"],
            pass_fds=(3, 4), preexec_fn=fds, stdin=subprocess.DEVNULL,
            stdout=self.log, stderr=self.log)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.buf = b""
        self.next_id = 0
        self.problems = []
        self.session = None

    def send(self, method, params=None, session=True):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self.to_chrome, json.dumps(msg).encode() + b"\0")
        return self.reply(self.next_id)

    def reply(self, want, deadline=60):
        end = time.monotonic() + deadline
        while True:
            while b"\0" in self.buf:
                raw, self.buf = self.buf.split(b"\0", 1)
                msg = json.loads(raw)
                if msg.get("id") == want:
                    if "error" in msg:
                        raise RuntimeError("%s" % msg["error"])
                    return msg.get("result", {})
                self.event(msg)
            if time.monotonic() > end:
                raise RuntimeError("chromium did not answer within %d s" % deadline)
            data = os.read(self.from_chrome, 1 << 20)
            if not data:
                raise RuntimeError("chromium went away")
            self.buf += data

    def event(self, msg):
        method = msg.get("method")
        params = msg.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = params.get("exceptionDetails", {})
            text = d.get("exception", {}).get("description") or d.get("text")
            self.problems.append("exception: %s" % text)
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            args = [a.get("value", a.get("description", "")) for a in params.get("args", [])]
            self.problems.append("console error: %s" % " ".join(map(str, args)))

    def evaluate(self, expr):
        r = self.send("Runtime.evaluate", {"expression": expr, "returnByValue": True,
                                           "awaitPromise": True})
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise RuntimeError("%s: %s" % (expr, d.get("exception", {}).get("description",
                                                                            d.get("text"))))
        return r.get("result", {}).get("value")

    def close(self):
        try:
            self.send("Browser.close", session=False)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def main(argv):
    args = argv[1:]
    opts = {}
    flags = []
    while len(args) > 1 and args[0].startswith("--"):
        if args[0] == "--flag":
            flags.append(args[1])
        else:
            opts[args[0][2:]] = args[1]
        args = args[2:]
    if len(args) < 1 or "chromium" not in opts or "profile" not in opts:
        sys.stderr.write(__doc__)
        return 2
    url, steps = args[0], args[1:]
    b = Browser(opts["chromium"], opts["profile"], flags)
    rc = 0
    try:
        target = b.send("Target.createTarget", {"url": "about:blank"}, session=False)
        b.session = b.send("Target.attachToTarget", {"targetId": target["targetId"],
                                                     "flatten": True},
                           session=False)["sessionId"]
        b.send("Runtime.enable")
        b.send("Page.enable")
        b.send("Page.navigate", {"url": url})
        for step in steps:
            kind, _, rest = step.partition(":")
            if kind == "wait":
                secs, _, expr = rest.partition(":")
                end = time.monotonic() + float(secs)
                while not b.evaluate(expr):
                    if b.problems:
                        raise RuntimeError("while waiting for %s" % expr)
                    if time.monotonic() > end:
                        # What the page showed instead, to tell why.
                        shown = b.evaluate("document.body ? document.body.innerText"
                                           ".slice(0, 2000) : ''")
                        raise RuntimeError("not true after %s s: %s\nthe page shows:\n%s"
                                           % (secs, expr, shown))
                    time.sleep(0.1)
            elif kind == "eval":
                print(json.dumps(b.evaluate(rest)), flush=True)
            elif kind == "shot":
                size, _, path = rest.partition(":")
                w, h = (int(x) for x in size.split("x"))
                b.send("Emulation.setDeviceMetricsOverride",
                       {"width": w, "height": h, "deviceScaleFactor": 1, "mobile": False})
                # Two frames: the resize handler lays the grid out, the next frame draws it.
                b.evaluate("new Promise(r => requestAnimationFrame(() => "
                           "requestAnimationFrame(() => r(true))))")
                shot = b.send("Page.captureScreenshot", {"format": "png"})
                with open(path, "wb") as f:
                    f.write(base64.b64decode(shot["data"]))
            else:
                raise RuntimeError("unknown step %s" % step)
            if b.problems:
                raise RuntimeError("the page reported problems")
    except Exception as e:  # noqa: BLE001 - every failure is reported the same way
        sys.stderr.write("browser: %s\n" % e)
        rc = 1
    for p in b.problems:
        sys.stderr.write("browser: %s\n" % p)
        rc = 1
    b.close()
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv))
