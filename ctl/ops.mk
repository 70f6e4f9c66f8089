# ctl/ops.mk: placeholder until its owner writes it.
