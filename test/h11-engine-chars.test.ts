// h11 engine — byte helpers: latin1 decoding is exact for every byte value and length.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { latin1 } from '../workers/h11/engine/chars.js';
import { prng } from './h11-engine-helpers.test.js';

test('latin1(): the same string as Buffer#toString("latin1") for every length and byte value', () => {
  const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  for (let s = 0; s < 256; s++) for (let e = s; e <= Math.min(256, s + 40); e++) {
    assert.equal(latin1(all, s, e), all.toString('latin1', s, e), `[${s}, ${e})`);
  }
  const rand = prng(3);
  const buf = Buffer.from(Array.from({ length: 4096 }, () => Math.floor(rand() * 256)));
  for (let i = 0; i < 2000; i++) {
    const s = Math.floor(rand() * 4000), e = s + Math.floor(rand() * 96);
    assert.equal(latin1(buf, s, e), buf.toString('latin1', s, e));
  }
  assert.equal(latin1(all, 10, 10), '');
});
