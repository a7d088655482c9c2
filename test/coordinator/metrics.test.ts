// The Prometheus exposition: HELP/TYPE before each family, labels escaped, counters only go up.
import { expect, test } from "bun:test";
import { Registry } from "../../src/coordinator/metrics.ts";

test("families render HELP and TYPE, preset series start at 0, labels are sorted and escaped", () => {
  const r = new Registry();
  const c = r.counter("x_total", "Things.\nMore", [{ kind: "a" }]);
  const g = r.gauge("y", "Level.");
  c.inc(2, { kind: "a" });
  c.inc(1, { kind: 'q"\\\n', z: "1" });
  c.inc(-5, { kind: "a" });
  c.inc(NaN, { kind: "a" });
  g.set(7);
  expect(r.render()).toBe(
    [
      "# HELP x_total Things.\\nMore",
      "# TYPE x_total counter",
      'x_total{kind="a"} 2',
      'x_total{kind="q\\"\\\\\\n",z="1"} 1',
      "# HELP y Level.",
      "# TYPE y gauge",
      "y 7",
      "",
    ].join("\n"),
  );
  expect(c.value({ kind: "a" })).toBe(2);
});

test("bad names and duplicate families are programming errors", () => {
  const r = new Registry();
  r.gauge("ok", "fine");
  expect(() => r.gauge("ok", "again")).toThrow("registered twice");
  expect(() => r.counter("bad-name", "no")).toThrow("bad metric name");
  expect(() => r.counter("fine_total", "x").inc(1, { "bad-label": "v" })).toThrow("bad label name");
});
