// Preloaded into the Portkey gateway by bench/run (node --require): the
// gateway's start-server.js binds every interface and has no host option, so
// make any listen() without a host bind 127.0.0.1 instead. Benchmarks never
// leave loopback.
'use strict';
const net = require('node:net');
const orig = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
	if (typeof args[0] === 'number') {
		if (typeof args[1] !== 'string') args.splice(1, 0, '127.0.0.1');
	} else if (args[0] && typeof args[0] === 'object' && !Array.isArray(args[0]) && args[0].path === undefined &&
	    args[0].host === undefined) {
		args[0] = { ...args[0], host: '127.0.0.1' };
	}
	return orig.apply(this, args);
};
