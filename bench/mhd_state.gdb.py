# gdb Python script: the state libmicrohttpd keeps per connection, for each
# event loop of a running gateway (docs/benchmarks.md, the kind-1 stall).
# Needs a libmicrohttpd with debug information; Debian's has none, so build
# the same 0.9.75 from its source package and run the gateway on it:
#
#   (deb-src line for bookworm) apt-get source libmicrohttpd
#   cd libmicrohttpd-0.9.75 && ./configure --prefix=/tmp/mhd-dbg --disable-https \
#       --disable-doc --disable-examples CFLAGS="-g -O0" && make -j2 && make install
#   LD_LIBRARY_PATH=/tmp/mhd-dbg/lib MHD_GDB=bench/mhd_state.gdb.py \
#       flock /tmp/sb-test.lock python3 bench/fill_cycles.py 250 1.5 /tmp/stall
#
# Do not rebuild the gateway while it runs: gdb then finds no symbols.
# epoll_state bits: 1 READ_READY, 2 WRITE_READY, 4 IN_EREADY_EDLL,
# 8 IN_EPOLL_SET, 16 SUSPENDED, 128 ERROR; event_loop_info: READ, WRITE,
# BLOCK, CLEANUP.
import gdb

gdb.execute("set pagination off")
out = []
seen = set()
for th in gdb.selected_inferior().threads():
    th.switch()
    f = gdb.newest_frame()
    while f is not None:
        if f.name() == "MHD_polling_thread":
            d = f.read_var("cls").cast(gdb.lookup_type("struct MHD_Daemon").pointer())
            if int(d) in seen:
                break
            seen.add(int(d))
            out.append("daemon %x connections=%d suspended_head=%s resuming=%s" % (
                int(d), int(d["connections"]), d["suspended_connections_head"], d["resuming"]))
            c, n = d["connections_head"], 0
            while int(c) != 0 and n < 100000:
                n += 1
                out.append("  conn fd=%d state=%s eli=%s epoll_state=%d rbo=%d rbs=%d last_activity=%d" % (
                    int(c["socket_fd"]), c["state"], c["event_loop_info"], int(c["epoll_state"]),
                    int(c["read_buffer_offset"]), int(c["read_buffer_size"]), int(c["last_activity"])))
                c = c["next"]
            e, m = d["eready_head"], 0
            while int(e) != 0 and m < 100000:
                m += 1
                e = e["nextE"]
            out.append("  eready %d" % m)
            break
        f = f.older()
try:
    out.append("now %d" % int(gdb.parse_and_eval("MHD_monotonic_msec_counter()")))
except gdb.error as e:
    out.append("now: %s" % e)
print("\n".join(out))
