// A terminal's output made fit for a file or a pipe: escape sequences (colours, cursor moves, bracketed
// paste, titles) dropped and CR LF turned into LF. Stateful, since a sequence may straddle two chunks.
const ESC = 0x1b;
const BEL = 0x07;

export function plainTextFilter(): (chunk: Uint8Array) => Buffer {
  // 0: text, 1: after ESC, 2: in CSI (ESC [), 3: in OSC/DCS string (until BEL or ESC \), 4: ESC inside a string
  let state = 0;
  let cr = false;
  return (chunk) => {
    const out: number[] = [];
    for (const b of chunk) {
      if (state === 1) state = b === 0x5b ? 2 : b === 0x5d || b === 0x50 || b === 0x5f || b === 0x5e ? 3 : 0;
      else if (state === 2) {
        if (b >= 0x40 && b <= 0x7e) state = 0;
      } else if (state === 3) {
        if (b === BEL) state = 0;
        else if (b === ESC) state = 4;
      } else if (state === 4) state = b === 0x5c ? 0 : 3;
      else if (b === ESC) state = 1;
      else {
        if (cr && b !== 0x0a) out.push(0x0d);
        cr = b === 0x0d;
        if (!cr) out.push(b);
      }
    }
    return Buffer.from(out);
  };
}
