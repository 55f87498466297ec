import torch, sys
from pathlib import Path
from mbm.checkpoint import load_checkpoint, save_checkpoint
from mbm.config import ImageConfig
from mbm.data.readers import list_device_photos, split_photos
from mbm.scenarios.voice_control.data import load_photo_pool
from mbm.features.image_cache import prepare_pretrained_images
from mbm.paths import CACHE
torch.set_num_threads(2)
ck = load_checkpoint(sys.argv[1], 'voice_control'); model = ck.build_model()
train_photos = split_photos(list_device_photos(Path('../shared/data')))[0]
pool = load_photo_pool(train_photos, ck.config.image)
enc = model.encoders['image']
old_dev = {k: v.clone() for k, v in enc.device_head.state_dict().items()}
_, _, fit = prepare_pretrained_images(enc, pool, [p.path.name for p in train_photos], Path('../shared/data'), ck.config.image, 4, 0, CACHE)
print('device head unchanged:', all(torch.allclose(old_dev[k], v, atol=1e-4) for k, v in enc.device_head.state_dict().items()))
enc.device_head.load_state_dict(old_dev)
ck.state_dict = model.state_dict(); ck.extra['image_backbone']['fit'] = {**ck.extra['image_backbone']['fit'], **fit, 'device_head_train_accuracy': ck.extra['image_backbone']['fit']['device_head_train_accuracy']}
print(fit)
save_checkpoint(ck, sys.argv[2])
