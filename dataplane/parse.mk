# dataplane/parse.mk: placeholder until its owner writes it.
