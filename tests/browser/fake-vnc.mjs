// A tiny VNC (RFB 3.8) server for the browser tests: no security, a 320x200
// screen with a recognisable picture, sent raw on every full update
// request. Counts the frames it sent and the key events it received.
import net from 'node:net';

const W = 320, H = 200;

function picture(fmt) {
  // fmt: the client's pixel format (32 bpp true colour); shifts place r, g, b.
  const buf = Buffer.alloc(W * H * 4);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      let r = 30, g = 60, b = 110;                              // a blue desktop
      if (y < 16) { r = 220; g = 220; b = 220; }               // a bright title bar
      else if (x > 40 && x < 280 && y > 40 && y < 170) {       // a light window
        r = 235; g = 235; b = 225;
        if (y > 60 && (y % 12) < 6 && x > 56 && x < 56 + ((y * 7) % 180)) { r = 40; g = 40; b = 40; } // "text"
      }
      const v = (r << fmt.rs) | (g << fmt.gs) | (b << fmt.bs);
      if (fmt.be) buf.writeUInt32BE(v >>> 0, (y * W + x) * 4);
      else buf.writeUInt32LE(v >>> 0, (y * W + x) * 4);
    }
  }
  return buf;
}

export function startFakeVnc() {
  const stats = { port: 0, updates: 0, keys: 0, clients: 0, close: () => server.close() };
  const server = net.createServer(sock => {
    stats.clients++;
    let buf = Buffer.alloc(0);
    let stage = 'version';
    let fmt = { rs: 16, gs: 8, bs: 0, be: false };
    sock.on('error', () => {});
    sock.write('RFB 003.008\n');
    sock.on('data', d => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        if (stage === 'version') {
          if (buf.length < 12) return;
          buf = buf.subarray(12);
          sock.write(Buffer.from([1, 1]));           // one security type: None
          stage = 'security';
        } else if (stage === 'security') {
          if (buf.length < 1) return;
          buf = buf.subarray(1);
          sock.write(Buffer.from([0, 0, 0, 0]));     // SecurityResult OK
          stage = 'init';
        } else if (stage === 'init') {
          if (buf.length < 1) return;
          buf = buf.subarray(1);
          const name = Buffer.from('legacy01');
          const si = Buffer.alloc(24 + name.length);
          si.writeUInt16BE(W, 0); si.writeUInt16BE(H, 2);
          Buffer.from([32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0]).copy(si, 4);
          si.writeUInt32BE(name.length, 20);
          name.copy(si, 24);
          sock.write(si);
          stage = 'run';
        } else {
          if (buf.length < 1) return;
          const type = buf[0];
          let need;
          if (type === 0) need = 20;
          else if (type === 2) { if (buf.length < 4) return; need = 4 + 4 * buf.readUInt16BE(2); }
          else if (type === 3) need = 10;
          else if (type === 4) need = 8;
          else if (type === 5) need = 6;
          else if (type === 6) { if (buf.length < 8) return; need = 8 + buf.readUInt32BE(4); }
          else { sock.destroy(); return; }
          if (buf.length < need) return;
          const msg = buf.subarray(0, need);
          buf = buf.subarray(need);
          if (type === 0) fmt = { be: msg[6] !== 0, rs: msg[14], gs: msg[15], bs: msg[16] };
          if (type === 4) stats.keys++;
          if (type === 3 && msg[1] === 0) {              // a full (non-incremental) update request
            const hdr = Buffer.alloc(16);
            hdr[0] = 0; hdr.writeUInt16BE(1, 2);
            hdr.writeUInt16BE(0, 4); hdr.writeUInt16BE(0, 6); hdr.writeUInt16BE(W, 8); hdr.writeUInt16BE(H, 10);
            hdr.writeInt32BE(0, 12);                     // raw encoding
            sock.write(Buffer.concat([hdr, picture(fmt)]));
            stats.updates++;
          }
        }
      }
    });
  });
  return new Promise(resolve => server.listen(0, '127.0.0.1', () => { stats.port = server.address().port; resolve(stats); }));
}
