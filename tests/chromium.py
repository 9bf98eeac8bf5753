"""Headless Chromium driven from Python with nothing installed but Chromium: its DevTools
protocol spoken over a pair of pipes (--remote-debugging-pipe: Chromium reads commands from
its file descriptor 3 and answers on 4, each message JSON ended by a NUL byte). Tests and the
benchmark open the cells page with it, as a reader would, and read the page's DOM."""
import base64
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

BINARY = shutil.which("chromium")
WHY_NOT = ("headless Chromium is not installed (apt-get install chromium); it is what opens "
           "the page as a reader would")


ON_3_AND_4_THEN_EXEC = """
import os, sys
commands, answers = int(sys.argv[1]), int(sys.argv[2])
os.dup2(commands, 3)
os.dup2(answers, 4)
os.close(commands)
os.close(answers)
os.execv(sys.argv[3], sys.argv[3:])
"""


class Chromium:
    """One headless browser with one tab; use as a context manager."""

    def __init__(self, width=1200, height=900):
        self.profile = tempfile.TemporaryDirectory()
        pipes = os.pipe(), os.pipe()
        # Numbers from 10 up, so that moving them onto 3 and 4 cannot overwrite either.
        (commands_read, self.commands), (self.answers, answers_written) = (
            [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in pair] for pair in pipes)
        for fd in (*pipes[0], *pipes[1]):
            os.close(fd)
        # A small Python puts the pipe's ends on 3 and 4, then becomes Chromium: a hook run
        # between fork and exec (preexec_fn) is unsafe where threads run, as TensorFlow's do,
        # and sh may not take descriptors above 9.
        self.process = subprocess.Popen(
            [sys.executable, "-c", ON_3_AND_4_THEN_EXEC, str(commands_read),
             str(answers_written), BINARY, "--headless", "--no-sandbox", "--disable-gpu",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--remote-debugging-pipe", f"--window-size={width},{height}",
             f"--user-data-dir={self.profile.name}", "about:blank"],
            pass_fds=(commands_read, answers_written), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(commands_read)
        os.close(answers_written)
        self.unread, self.last_id = b"", 0
        tab = next(target for target in self.call("Target.getTargets")["targetInfos"]
                   if target["type"] == "page")
        self.session = self.call("Target.attachToTarget", targetId=tab["targetId"],
                                 flatten=True)["sessionId"]

    def call(self, method, session=None, **params):
        """Send one command and wait for its answer, passing over events."""
        self.last_id += 1
        message = {"id": self.last_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self.commands, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self.unread:
                chunk = os.read(self.answers, 1 << 16)
                if not chunk:
                    raise RuntimeError("Chromium closed its pipe")
                self.unread += chunk
            raw, self.unread = self.unread.split(b"\0", 1)
            answer = json.loads(raw)
            if answer.get("id") == self.last_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer["result"]

    def evaluate(self, expression):
        """The value of a JavaScript expression in the tab, a promise awaited."""
        result = self.call("Runtime.evaluate", self.session, expression=expression,
                           awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url, ready="true", timeout=60):
        """Go to `url` and wait until the expression `ready` is true there. The tab goes
        to about:blank first: a `url` differing from the last only after its # would not
        load the page again."""
        self.call("Page.navigate", self.session, url="about:blank")
        self.call("Page.navigate", self.session, url=url)
        self.wait_until(f"document.readyState === 'complete' && ({ready})", timeout)

    def wait_until(self, expression, timeout=60):
        """Wait until a JavaScript expression is true in the tab."""
        deadline = time.monotonic() + timeout
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                raise TimeoutError(f"not true after {timeout} s: {expression}")
            time.sleep(0.02)

    def screenshot(self, path):
        shot = self.call("Page.captureScreenshot", self.session, format="png")
        with open(path, "wb") as handle:
            handle.write(base64.b64decode(shot["data"]))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.call("Browser.close")
        except (RuntimeError, OSError):
            pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        os.close(self.commands)
        os.close(self.answers)
        self.profile.cleanup()
