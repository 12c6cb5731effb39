/**
 * Tokenization with gpt-tokenizer (o200k_base / cl100k_base), guarded against pathological input.
 *
 * BPE cost grows with the square of a pre-tokenizer piece's length, so a megabyte of "xxxx…" would
 * take minutes. Text is therefore encoded in segments cut only where the encodings' pre-tokenizer
 * regexes split anyway (a single space after a non-space character and before a letter or digit:
 * the piece before ends there and " word"/"123" starts there in both o200k_base and cl100k_base), so
 * the tokens are exactly those of encoding the whole string. Only a run of more than HARD_CUT
 * characters without such a boundary (minified blobs, "xxxx…") is cut every HARD_CUT characters,
 * which can change a token or two at each cut. Encoding stops as soon as a caller-given budget of
 * tokens is reached, so work per example is bounded by the model's token limit.
 */
import * as cl100k from 'gpt-tokenizer/encoding/cl100k_base';
import * as o200k from 'gpt-tokenizer/encoding/o200k_base';
import type { EncodingName } from './models.js';

/** Segments are cut at a natural boundary once they reach this many characters. */
const SOFT_CUT = 2_048;
/** A run without a natural boundary is cut hard after this many characters. */
const HARD_CUT = 1_024;

const NO_SPECIAL = { disallowedSpecial: new Set<string>() };

/** Strings that are special tokens in OpenAI's encodings and chat format; they are refused in training data. */
export const SPECIAL_TOKEN_RE = /<\|(?:endoftext|fim_prefix|fim_middle|fim_suffix|endofprompt|im_start|im_end|im_sep)\|>/;

export interface Encoder {
  name: EncodingName;
  /** <|im_start|>, <|im_sep|>, <|im_end|> of the encoding: the three per-message tokens of the chat format. */
  imStart: number;
  imSep: number;
  imEnd: number;
  /** The single token put before a message's name (the "+1 for a name"). */
  nameSep: number;
  /**
   * Append the tokens of `text` to `out`, but no more than `budget` tokens. Returns the number of tokens
   * in the text if the whole text was encoded within the budget, or -1 if it was cut.
   */
  encodeInto(text: string, out: number[], budget: number): number;
  /** Plain encode (tests, tools). Special-token strings are encoded as ordinary text. */
  encode(text: string): number[];
}

function isSpace(c: number): boolean {
  return c === 32 || c === 9 || c === 10 || c === 13 || c === 11 || c === 12 || c === 0xa0 || c === 0x3000;
}

const WORDISH = /[\p{L}\p{N}]/u;

/** Split points [0, a, b, …, text.length] as described above. */
function segments(text: string): number[] {
  const cuts = [0];
  if (text.length <= SOFT_CUT) {
    cuts.push(text.length);
    return cuts;
  }
  let start = 0;
  let lastNatural = -1;
  for (let i = 1; i < text.length - 1; i++) {
    if (
      text.charCodeAt(i) === 32 &&
      !isSpace(text.charCodeAt(i - 1)) &&
      WORDISH.test(text[i + 1]) &&
      // not inside a surrogate pair
      !(text.charCodeAt(i - 1) >= 0xd800 && text.charCodeAt(i - 1) <= 0xdbff)
    ) {
      lastNatural = i;
      if (i - start >= SOFT_CUT) {
        cuts.push(i);
        start = i;
        continue;
      }
    }
    if (i - Math.max(start, lastNatural) >= HARD_CUT) {
      // Hard cut, avoiding the middle of a surrogate pair.
      let cut = i;
      const code = text.charCodeAt(cut - 1);
      if (code >= 0xd800 && code <= 0xdbff) cut += 1;
      cuts.push(cut);
      start = cut;
      lastNatural = -1;
      i = cut;
    }
  }
  if (start < text.length) cuts.push(text.length);
  return cuts;
}

type Api = typeof o200k;

function makeEncoder(name: EncodingName, api: Api): Encoder {
  const special = (s: string) => api.encode(s, { allowedSpecial: new Set([s]) })[0];
  const enc = (s: string) => api.encode(s, NO_SPECIAL);
  const nameSep = enc(':');
  if (nameSep.length !== 1) throw new Error('unexpected tokenizer: ":" is not one token');
  return {
    name,
    imStart: special('<|im_start|>'),
    imSep: special('<|im_sep|>'),
    imEnd: special('<|im_end|>'),
    nameSep: nameSep[0],
    encode: enc,
    encodeInto(text, out, budget) {
      if (text.length === 0) return 0;
      const cuts = segments(text);
      let n = 0;
      for (let s = 0; s + 1 < cuts.length; s++) {
        const toks = enc(text.slice(cuts[s], cuts[s + 1]));
        const room = budget - n;
        if (toks.length > room) {
          for (let k = 0; k < room; k++) out.push(toks[k]);
          return -1;
        }
        for (let k = 0; k < toks.length; k++) out.push(toks[k]);
        n += toks.length;
      }
      return n;
    },
  };
}

const cache = new Map<EncodingName, Encoder>();

export function getEncoder(name: EncodingName): Encoder {
  let e = cache.get(name);
  if (!e) {
    e = makeEncoder(name, name === 'o200k_base' ? o200k : (cl100k as unknown as Api));
    cache.set(name, e);
  }
  return e;
}
