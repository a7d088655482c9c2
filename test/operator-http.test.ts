// Unit tests for src/cli/operator-http.ts: the operator token goes over HTTPS, or plain HTTP only to this machine.
import { expect, test } from "bun:test";
import { isLoopbackUrl, operatorBases } from "../src/cli/operator-http.ts";

test("loopback is 127/8, ::1 and localhost; anything else is the network", () => {
  for (const u of [
    "http://127.0.0.1:8080",
    "http://127.9.9.9",
    "http://[::1]:8080",
    "http://localhost:8080",
    "http://a.localhost",
  ]) {
    expect(isLoopbackUrl(new URL(u))).toBe(true);
  }
  for (const u of [
    "http://10.0.0.1",
    "http://coordinator.example:8080",
    "http://[::2]",
    "http://127.0.0.1.example",
    "http://0.0.0.0",
  ]) {
    expect(isLoopbackUrl(new URL(u))).toBe(false);
  }
});

test("a plain-HTTP URL to another machine is refused before anything is sent; HTTPS and loopback HTTP pass", () => {
  expect(() => operatorBases("http://coordinator.example:8080")).toThrow(
    /refusing to send the operator token over plain HTTP to coordinator.example:8080/,
  );
  expect(operatorBases("https://coordinator.example:8080/")).toEqual(["https://coordinator.example:8080"]);
  expect(operatorBases("http://127.0.0.1:8080")).toEqual(["http://127.0.0.1:8080"]);
  expect(() => operatorBases("ftp://x")).toThrow(/not an http/);
});
