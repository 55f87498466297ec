import sys, glob, torch, numpy as np
from mbm.scenarios.voice_control.predictor import VoiceControlPredictor
from mbm.checkpoint import load_checkpoint
torch.set_num_threads(1)
p = VoiceControlPredictor(load_checkpoint(sys.argv[1], 'voice_control'))
ok = 0; files = sorted(glob.glob('/work/shared/data/devices_sample/*.jpg'))
for f in files:
    try:
        r = p.predict(image=f)
        got = r.sees; rec = r.device_recognised
    except Exception as e:
        got, rec = str(e)[:80], None
    truth = f.split('/')[-1][:-4]
    ok += bool(got and got[0] == truth)
    print(truth, got, rec)
print('devices_sample', ok, '/', len(files))
import matplotlib.cbook as cb
for f in [cb.get_sample_data('grace_hopper.jpg', asfileobj=False), '/root/.rustup/toolchains/stable-x86_64-unknown-linux-gnu/share/doc/rust/html/embedded-book/assets/f3.jpg']:
    try:
        r = p.predict(image=f); print(f.split('/')[-1], r.sees, r.device_recognised, r.warnings)
    except Exception as e: print(f.split('/')[-1], 'ERR', str(e)[:150])
