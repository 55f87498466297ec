import sys, time, torch
from mbm.scenarios.voice_control.predictor import VoiceControlPredictor
torch.set_num_threads(1)
A = 'assets/voice_control/'
for path in sys.argv[1:]:
    p = VoiceControlPredictor.from_checkpoint(path)
    prep = p.prepare(audio=A + 'up.wav', image=A + 'lamp.jpg', text='turn it up'); x = p.batch(prep)
    ts = []
    with torch.inference_mode():
        for i in range(45):
            t = time.perf_counter(); p.model(x)
            if i >= 5: ts.append((time.perf_counter() - t) * 1000)
    ps = []
    for i in range(23):
        t = time.perf_counter(); p.predict(audio=A + 'up.wav', image=A + 'lamp.jpg', text='turn it up')
        if i >= 3: ps.append((time.perf_counter() - t) * 1000)
    ts.sort(); ps.sort()
    print(path, 'model p50 %.1f ms' % ts[len(ts) // 2], 'predict p50 %.1f p95 %.1f ms' % (ps[len(ps) // 2], ps[int(len(ps) * .95)]))
