// The FG's inzage form: the BSN is encrypted under the federation key Y here,
// in the browser, exactly as policy/pseudonyms does it, so only the
// ciphertext (B || C || P, 96 bytes as hex) is sent to the node.
//   M = ristretto255 from_hash(SHA-512("schakel/v1/subject\0" + "bsn" + "\0" + bsn))
//   B = rG, C = M + rY, P = Y   with r a fresh random scalar
import { ristretto255, ristretto255_hasher } from "./noble-ristretto255.js";

const Point = ristretto255.Point;
const WEIGHTS = [9, 8, 7, 6, 5, 4, 3, 2, -1];

export function isValidBsn(value) {
  if (!/^[0-9]{9}$/.test(value) || value === "000000000") return false;
  const sum = WEIGHTS.reduce((acc, w, i) => acc + w * Number(value[i]), 0);
  return sum % 11 === 0;
}

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function fromHex(text) {
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.substr(2 * i, 2), 16);
  return out;
}

export async function subjectPoint(idType, value) {
  const text = new TextEncoder().encode(`schakel/v1/subject\u0000${idType}\u0000${value}`);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-512", text));
  return ristretto255_hasher.deriveToCurve(digest);
}

function randomScalar() {
  // 64 uniform bytes reduced modulo the group order: a bias below 2^-250.
  const bytes = crypto.getRandomValues(new Uint8Array(64));
  let n = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i]);
  const r = n % Point.Fn.ORDER;
  return r === 0n ? randomScalar() : r;
}

export async function encryptBsn(bsn, yHex) {
  if (!isValidBsn(bsn)) throw new Error("Dit is geen geldig BSN (9 cijfers, elfproef).");
  const y = Point.fromBytes(fromHex(yHex));
  const m = await subjectPoint("bsn", bsn);
  const r = randomScalar();
  const b = Point.BASE.multiply(r);
  const c = m.add(y.multiply(r));
  return hex(b.toBytes()) + hex(c.toBytes()) + hex(y.toBytes());
}

const form = document.getElementById("inzage");
if (form) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = document.getElementById("bsn");
    const error = document.getElementById("bsn-fout");
    try {
      const bsn = input.value.trim().padStart(9, "0");
      document.getElementById("versleuteld").value = await encryptBsn(bsn, form.dataset.y);
      input.value = "";
      error.hidden = true;
      form.submit();
    } catch (failure) {
      error.textContent = failure.message;
      error.hidden = false;
    }
  });
  form.dataset.ready = "1";
}
