"""The --visualize page taken apart, and its own model script run under Node: what the tests
and the benchmark read of it."""
import html
import json
import re
import shutil
import subprocess

NODE = shutil.which("node")

# Runs the page's own model script, given with what to read on standard input, `readings`
# times from the first character (each timed), then any edit and draws; prints what the
# last reading holds, and the seconds each took, as JSON.
NODE_READER = """
const vm = require("vm");
const given = JSON.parse(require("fs").readFileSync(0, "utf8"));
vm.runInThisContext(given.script + `
globalThis.readGiven = (given) => {
  const model = loadModel(given.spec, given.weights, {webAssembly: given.webAssembly});
  const seconds = [];
  let reading;
  for (let k = 0; k < given.readings; k++) {
    const started = performance.now();
    reading = new Reading(model, given.cells);
    for (const ch of given.passage) reading.read(ch);
    seconds.push((performance.now() - started) / 1000);
  }
  if (given.edit) {
    reading.truncate(given.edit.at);
    for (const ch of given.edit.text) reading.read(ch);
  }
  const drawn = given.draws ? given.draws.at.map((u) => reading.draw(given.draws.temperature, u))
                            : [];
  return {bits: reading.bits.map((bits) => Number.isNaN(bits) ? null : bits),
          c: reading.c, known: reading.known, top: reading.top, drawn,
          kind: model.product.kind, seconds};
};`);
process.stdout.write(JSON.stringify(readGiven(given)));
"""


class Page:
    """What a written cells page holds, taken apart."""

    def __init__(self, path):
        self.path = path
        self.text = path.read_text(encoding="utf-8")
        self.uri = path.as_uri()
        self.scripts = dict(re.findall(r'<script[^>]* id="([a-z]+)">\n?(.*?)</script>',
                                       self.text, re.DOTALL))
        self.spec = json.loads(self.scripts["spec"])
        self.weights = self.scripts["weights"]
        self.passage = html.unescape(re.search(r'<textarea id="passage"[^>]*>\n(.*?)</textarea>',
                                               self.text, re.DOTALL).group(1))
        self.cells = [[int(layer), int(index)] for layer, index in re.findall(
            r'data-layer="(\d+)" data-index="(\d+)"', self.text)]

    def read_in_node(self, passage=None, cells=None, web_assembly=True, readings=1, **more):
        """What the page's own script reads, under Node: by default the page's passage and
        cells, with WebAssembly where Node has it."""
        given = {"script": self.scripts["lstm"], "spec": self.spec, "weights": self.weights,
                 "webAssembly": web_assembly, "readings": readings,
                 "passage": self.passage if passage is None else passage,
                 "cells": self.cells if cells is None else cells, **more}
        result = subprocess.run([NODE, "-e", NODE_READER], input=json.dumps(given),
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)
