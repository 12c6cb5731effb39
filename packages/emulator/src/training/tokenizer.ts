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

/** The end of the segment that starts at `start` (see above). */
function nextCut(text: string, start: number): number {
  if (text.length - start <= SOFT_CUT) return text.length;
  let lastNatural = -1;
  for (let i = start + 1; i < text.length - 1; i++) {
    if (
      text.charCodeAt(i) === 32 &&
      !isSpace(text.charCodeAt(i - 1)) &&
      WORDISH.test(text[i + 1]) &&
      // not right after the first half of a surrogate pair
      !(text.charCodeAt(i - 1) >= 0xd800 && text.charCodeAt(i - 1) <= 0xdbff)
    ) {
      if (i - start >= SOFT_CUT) return i;
      lastNatural = i;
    }
    if (i - Math.max(start, lastNatural) >= HARD_CUT) {
      // A run without a natural boundary: cut it hard, unless a natural boundary came earlier in this segment.
      if (lastNatural > start) return lastNatural;
      const code = text.charCodeAt(i - 1);
      return code >= 0xd800 && code <= 0xdbff ? i + 1 : i;
    }
  }
  return text.length;
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
      let n = 0;
      for (let from = 0; from < text.length; ) {
        const to = nextCut(text, from);
        const toks = enc(text.slice(from, to));
        from = to;
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
