# admin-fcgi/events.mk: placeholder until its owner writes it.
