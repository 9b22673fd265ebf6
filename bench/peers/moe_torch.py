"""The MoE layer in PyTorch on the CPU (what a CPU user would pick instead of moejit):
router softmax, top-k, per-expert index_select -> Linear -> GELU -> Linear * gate -> index_add_.
Prints tokens/s for forward and forward+backward (median of rounds) as JSON.

    python3 bench/peers/moe_torch.py T d E f k rounds

With rounds = 0 it serves timings one call at a time, so that a benchmark can alternate it with
other systems round by round: after warming up it prints "ready", then for each line "fwd" or
"fwdBwd" on stdin runs that pass once and prints its milliseconds.
"""
import json, sys, time
import torch

T, d, E, f, k, rounds = (int(a) for a in sys.argv[1:7])
# As many threads as moejit's native backend uses (the machine's cores), unless told otherwise.
torch.set_num_threads(int(__import__("os").environ.get("TORCH_THREADS", __import__("os").cpu_count())))
torch.manual_seed(0)
x = torch.randn(T, d, requires_grad=True)
router = (torch.randn(E, d) * 0.1).requires_grad_()
up = (torch.randn(E, f, d) * 0.05).requires_grad_()
down = (torch.randn(E, d, f) * 0.05).requires_grad_()
probe = torch.randn(T, d)

def layer():
    scores = torch.softmax(x @ router.t(), dim=-1)
    w, idx = torch.topk(scores, k, dim=-1)
    y = torch.zeros_like(x)
    for e in range(E):
        tok, slot = torch.nonzero(idx == e, as_tuple=True)
        if tok.numel() == 0:
            continue
        h = torch.nn.functional.gelu(x.index_select(0, tok) @ up[e].t())
        y = y.index_add(0, tok, (h @ down[e].t()) * w[tok, slot].unsqueeze(1))
    return (y * probe).sum()

def timed(fn):
    fn()
    ts = []
    for _ in range(rounds):
        t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)
    ts.sort()
    return ts[len(ts) // 2]

def fwd():
    with torch.no_grad():
        layer().item()

def fwd_bwd():
    for p in (x, router, up, down):
        p.grad = None
    loss = layer()
    loss.backward()
    loss.item()

if rounds == 0:
    passes = {"fwd": fwd, "fwdBwd": fwd_bwd}
    fwd(); fwd_bwd()
    print("ready", torch.get_num_threads(), flush=True)
    for line in sys.stdin:
        fn = passes[line.strip()]
        t0 = time.perf_counter(); fn(); ms = (time.perf_counter() - t0) * 1000
        print(ms, flush=True)
else:
    print(json.dumps({"fwd": T / timed(fwd), "fwdBwd": T / timed(fwd_bwd), "threads": torch.get_num_threads()}))
