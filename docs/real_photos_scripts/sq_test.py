import torch, numpy as np, glob
from PIL import Image
from torchvision.models._meta import _IMAGENET_CATEGORIES as C
from mbm.features.squeezenet import pretrained_squeezenet
torch.set_num_threads(1)
net = pretrained_squeezenet()
import matplotlib.cbook as cb
files = sorted(glob.glob('assets/voice_control/*.jpg')) + sorted(glob.glob('/work/shared/data/devices_sample/*.jpg')) + [cb.get_sample_data('grace_hopper.jpg', asfileobj=False)]
def load(f, S):
    im = Image.open(f).convert('RGB'); w,h=im.size; s=S/min(w,h)
    im = im.resize((max(S,round(w*s)), max(S,round(h*s))), Image.BILINEAR)
    w,h=im.size; l=(w-S)//2; t=(h-S)//2
    return torch.from_numpy(np.asarray(im.crop((l,t,l+S,t+S)),dtype=np.float32)).permute(2,0,1)[None]
for S in (128,224):
  for f in files:
    x = load(f,S)
    p = net(x).softmax(-1)[0]
    top = p.topk(3)
    print(S, f.split('/')[-2][:6], f.split('/')[-1][:14], [(C[i][:14], round(float(v),2)) for v,i in zip(top.values, top.indices)])
