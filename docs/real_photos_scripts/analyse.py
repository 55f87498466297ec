import sys, torch, numpy as np, hashlib
from collections import defaultdict
from mbm.scenarios.voice_control.spec import DEVICES
torch.manual_seed(0)
S = int(sys.argv[1])
c = torch.load(f'/work/main/cache/sq_feats_{S}.pt', weights_only=False)
dev = c['devices']; src = np.array(c['sources']); names = c['names']
held = np.array([int(hashlib.md5(n.encode()).hexdigest(), 16) % 1000 < 200 for n in names])
V = c['pooled'].shape[0]
import os
mode = os.environ.get('FEAT', 'pooled')
if mode == 'logp': c['pooled'] = c['logits'].log_softmax(-1)
elif mode == 'both': c['pooled'] = torch.cat([c['pooled'], c['logits'].log_softmax(-1)], -1)
logzs = lambda v: (c['cellzs'][v].mean((2,3)) if False else None)
from mbm.features.imagenet_devices import zero_shot
zs = torch.stack([zero_shot(c['logits'][v]) for v in range(V)])  # V,N,7
def acc(pred, sel): return float((pred[sel] == dev[sel]).float().mean())
print('zero-shot held-out', acc(zs[0].argmax(1), torch.tensor(held)))
for s in sorted(set(src)):
    sel = torch.tensor(src == s)
    print(f'  {s}:{acc(zs[0].argmax(1), sel):.2f}', end='')
print()
def fit(train_idx, lam, prior_w, views=range(0, V), steps=300, balance=True, learn_a=False):
    X = torch.cat([c['pooled'][v][train_idx] for v in views]); Z = torch.cat([zs[v][train_idx] for v in views])
    y = torch.cat([dev[train_idx]] * len(views))
    s = np.concatenate([src[train_idx]] * len(views))
    mu, sd = X.mean(0), X.std(0) + 1e-3
    w = torch.ones(len(y))
    if balance:
        for d in range(7):
            ss = [x for x in set(s[(y == d).numpy()])]
            for x in ss:
                m = torch.tensor((s == x)) & (y == d)
                w[m] = 1.0 / (len(ss) * m.sum())
        w = w / w.sum() * len(w)
    W = torch.zeros(X.shape[1], 7, requires_grad=True); b = torch.zeros(7, requires_grad=True); a = torch.tensor(float(prior_w), requires_grad=learn_a)
    opt = torch.optim.Adam([W, b] + ([a] if learn_a else []), lr=0.05)
    Xn = (X - mu) / sd; lz = Z.clamp_min(1e-6).log()
    for _ in range(steps):
        logit = a * lz + Xn @ W + b
        loss = (torch.nn.functional.cross_entropy(logit, y, reduction='none') * w).mean() + lam * (W ** 2).sum()
        opt.zero_grad(); loss.backward(); opt.step()
    return lambda X2, Z2: (a * Z2.clamp_min(1e-6).log() + ((X2 - mu) / sd) @ W + b).detach(), float(a)
train_idx = torch.tensor(~held)
for lam, pw in [(float(x.split(',')[0]), float(x.split(',')[1])) for x in sys.argv[2:]]:
    f, a = fit(train_idx, lam, pw)
    ho = acc(f(c['pooled'][0], zs[0]).argmax(1), torch.tensor(held))
    # LOSO
    per = defaultdict(list); tot = []
    for s in sorted(set(src)):
        tr = torch.tensor(src != s) & train_idx
        g, _ = fit(tr, lam, pw)
        pred = g(c['pooled'][0], zs[0]).argmax(1)
        for d in range(7):
            sel = torch.tensor(src == s) & (dev == d)
            if sel.sum() and len(set(src[(dev == d).numpy()])) >= 2:
                per[DEVICES[d]].append((s, round(acc(pred, sel), 2), int(sel.sum())))
    m = np.mean([np.mean([x[1] for x in v]) for v in per.values()])
    print(f'lam {lam} prior {pw} a={a:.2f} heldout {ho:.3f} LOSO class-mean {m:.3f}', {k: [(str(x[0]), x[1]) for x in v] for k, v in per.items()}, flush=True)
