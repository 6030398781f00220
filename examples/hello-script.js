// The hello handler as a script that listens itself (script mode, interface listen):
//   node examples/hello-script.js          serves on port 3000
//   arbiter examples/hello-script.js -w 4  the same port, four workers
import http from 'node:http';
import { handler } from './hello.js';

http.createServer(handler).listen(3000);
