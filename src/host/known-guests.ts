// known_guests: the guests this host has said yes to (like ssh's known_hosts): identity fingerprint, names
// seen, visits, last visit. A prompt reads it to say "new guest", "known as alice (3rd visit)", or to warn
// when a known name comes with another key, or a known key under another name.
import fs from "node:fs";
import path from "node:path";
import * as v from "valibot";
import { ConfigError } from "../errors.ts";
import { issueText } from "../validate.ts";
import { identityFingerprint, identityProblem, viaCode, viaShare } from "../pki/identity.ts";
import type { FrameOf, ServerFrame } from "../wire/protocol.ts";

/** Most guests and names per guest kept: the file stays small; the least recently seen go first. */
export const MAX_KNOWN_GUESTS = 1000;
const MAX_NAMES = 8;

const Entry = v.strictObject({
  id: v.pipe(v.string(), v.regex(/^SHA256:[A-Za-z0-9+/]{43}$/)),
  names: v.pipe(v.array(v.pipe(v.string(), v.minLength(1), v.maxLength(64))), v.minLength(1), v.maxLength(MAX_NAMES)),
  visits: v.pipe(v.number(), v.integer(), v.minValue(1)),
  last: v.pipe(v.number(), v.integer(), v.minValue(0)),
});
const File = v.strictObject({ v: v.literal(1), guests: v.pipe(v.array(Entry), v.maxLength(MAX_KNOWN_GUESTS)) });
export type KnownGuest = v.InferOutput<typeof Entry>;

/** What the host is told about a guest: new, known, or known with something that does not add up. */
export type Recognition =
  | { kind: "new" }
  | { kind: "known"; guest: KnownGuest }
  /** The key is known, but under other names: the same guest renamed, or a key in other hands. */
  | { kind: "renamed"; guest: KnownGuest }
  /** The name is known with other keys: another machine or a reinstall, or someone posing as them. */
  | { kind: "impostor"; others: KnownGuest[] };

export class KnownGuests {
  private guests: KnownGuest[];

  private constructor(
    private readonly file: string | undefined,
    guests: KnownGuest[],
  ) {
    this.guests = guests;
  }

  /** Reads the file (absent means nobody is known yet); a damaged file is an error, never silently emptied. */
  static load(file: string): KnownGuests {
    let text: string;
    try {
      text = fs.readFileSync(file, "utf8");
    } catch (err) {
      if ((err as { code?: string }).code === "ENOENT") return new KnownGuests(file, []);
      throw new ConfigError(`cannot read ${file}: ${(err as Error).message}`, { cause: err });
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      throw new ConfigError(`${file} is not valid JSON; fix it, or move it away to forget every known guest`, {
        cause: err,
      });
    }
    const r = v.safeParse(File, json);
    if (!r.success)
      throw new ConfigError(`${file}${issueText(r.issues)}; fix it, or move it away to forget every known guest`);
    return new KnownGuests(file, r.output.guests);
  }

  /** In memory only (tests, or a host without a home). */
  static memory(guests: KnownGuest[] = []): KnownGuests {
    return new KnownGuests(
      undefined,
      guests.map((g) => ({ ...g, names: [...g.names] })),
    );
  }

  recognise(id: string, name: string): Recognition {
    const mine = this.guests.find((g) => g.id === id);
    if (mine) return mine.names.includes(name) ? { kind: "known", guest: mine } : { kind: "renamed", guest: mine };
    const others = this.guests.filter((g) => g.names.includes(name));
    return others.length ? { kind: "impostor", others } : { kind: "new" };
  }

  /** The host said yes: one more visit for this key, under this name. Written at once. */
  visit(id: string, name: string, now = Date.now()): KnownGuest {
    let g = this.guests.find((x) => x.id === id);
    if (g) {
      g.visits++;
      g.last = now;
      g.names = [name, ...g.names.filter((n) => n !== name)].slice(0, MAX_NAMES);
    } else {
      g = { id, names: [name], visits: 1, last: now };
      this.guests.push(g);
      if (this.guests.length > MAX_KNOWN_GUESTS) {
        this.guests.sort((a, b) => b.last - a.last);
        this.guests.length = MAX_KNOWN_GUESTS;
      }
    }
    this.save();
    return g;
  }

  private save(): void {
    if (!this.file) return;
    // Write then rename: a crash leaves the old file or the new one, never half of one.
    fs.mkdirSync(path.dirname(this.file), { recursive: true, mode: 0o700 });
    const tmp = `${this.file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, `${JSON.stringify({ v: 1, guests: this.guests }, null, 1)}\n`, { mode: 0o600 });
    fs.renameSync(tmp, this.file);
  }
}

/**
 * The identity an ask carries, checked here whatever the coordinator said: its fingerprint, a problem (a
 * signature that does not hold for this very request), or neither (an older guest sent none).
 */
export function askIdentity(ask: FrameOf<ServerFrame, "ask">): { id?: string; problem?: string } {
  if (!ask.identity) return {};
  const via = ask.pake ? viaCode(ask.pake.nameplate) : viaShare(ask.shareId, ask.target);
  const problem = identityProblem(ask.identity, {
    tlsSpki: ask.guest.spki,
    name: ask.guest.name,
    reason: ask.reason,
    via,
  });
  return problem ? { problem } : { id: identityFingerprint(ask.identity.pub) };
}
