# dataplane/sched.mk: placeholder until its owner writes it.
