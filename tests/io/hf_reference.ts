/**
 * The tests' bridge to hf_reference.py, a PyTorch reading of checkpoints written from
 * transformers' Llama/Mixtral/PhiMoE modeling code: it runs requests in one Python process and
 * compares logits. Python is Debian's python3-torch (`/usr/bin/python3`, or MOEJIT_PYTHON).
 */
import * as mj from "../../mod.ts";

const PYTHON = Deno.env.get("MOEJIT_PYTHON") ?? "/usr/bin/python3";
const SCRIPT = new URL("./hf_reference.py", import.meta.url).pathname;

/** Why the PyTorch reading cannot run here, or null when it can. */
export async function torchMissing(): Promise<string | null> {
  try {
    const out = await new Deno.Command(PYTHON, {
      args: ["-c", "import torch; print(torch.__version__)"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (out.success) return null;
    const err = new TextDecoder().decode(out.stderr).trim().split("\n").pop();
    return `${PYTHON} cannot import torch (${err}); install python3-torch (apt)`;
  } catch (e) {
    return `${PYTHON} is not runnable (${(e as Error).message}); install python3-torch (apt)`;
  }
}

/** One answer of hf_reference.py: the command's fields, or `error`. */
export type Answer = Record<string, unknown> & { error?: string };

/** Runs requests in one Python process, one answer each (errors are answers, not throws). */
export async function reference(requests: Record<string, unknown>[]): Promise<Answer[]> {
  const child = new Deno.Command(PYTHON, {
    args: [SCRIPT],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(JSON.stringify(requests)));
  await w.close();
  const out = await child.output();
  if (!out.success) {
    throw new Error(`hf_reference.py failed:\n${new TextDecoder().decode(out.stderr)}`);
  }
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

/** The PyTorch logits of checkpoint `dir` on token ids [B][S]; throws the reading's refusal. */
export async function referenceLogits(dir: string, ids: number[][]): Promise<Float32Array> {
  const out = `${dir}.reference-logits.safetensors`;
  const [a] = await reference([{ cmd: "forward", dir, ids, out }]);
  if (a.error) throw new Error(`the PyTorch reading of ${dir} refused it: ${a.error}`);
  const t = (await mj.io.readSafetensors(out)).tensors.logits;
  await Deno.remove(out);
  return t.data as Float32Array;
}

/** moejit's inference logits of checkpoint `dir` on the current backend. */
export async function moejitLogits(dir: string, ids: number[][]): Promise<Float32Array> {
  const ck = await mj.io.loadCheckpoint<mj.nn.Params>(dir);
  const tokens = mj.tensor(ids, undefined, { dtype: "i32" });
  const { logits } = mj.nn.forward(ck.params, tokens, ck.config, { training: false });
  return (await logits.data()) as Float32Array;
}

/** Agreement of two logit arrays: max |Δ| / max |logit| of the reference. */
export function agreement(got: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (got.length !== ref.length) {
    throw new Error(`logits have ${got.length} values, the reference ${ref.length}`);
  }
  let diff = 0, top = 0;
  for (let i = 0; i < ref.length; i++) {
    diff = Math.max(diff, Math.abs(got[i] - ref[i]));
    top = Math.max(top, Math.abs(ref[i]));
  }
  return diff / top;
}
