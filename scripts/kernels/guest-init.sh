#!/bin/busybox sh
# /init of the kernel-compatibility guest (see scripts/kernels/initramfs.sh).
# Mounts what the daemon expects, runs the guest checks, which print exactly one
# "KMESH-RESULT {json}" line on the console, and powers off.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root KMESH_GUEST=1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mkdir -p /sys/fs/cgroup /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t bpf bpf /sys/fs/bpf
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
ip link set lo up
hostname kmesh-guest
if [ -x /usr/bin/dbus-daemon ]; then
  mkdir -p /run/dbus
  dbus-daemon --config-file=/etc/dbus-1/kmesh-guest-system.conf --fork --nopidfile || echo "KMESH-WARN no system bus"
fi
echo "KMESH-BOOTED $(uname -r) uptime=$(cut -d' ' -f1 /proc/uptime)"

# kmesh.script=<path relative to /kmesh> picks the guest program (default: the full check)
script=dist/test/kernels/guest/main.js
for a in $(cat /proc/cmdline); do
  case $a in kmesh.script=*) script=${a#kmesh.script=} ;; esac
done
cd /kmesh
node "$script"
echo "KMESH-EXIT $? uptime=$(cut -d' ' -f1 /proc/uptime)"
sync
poweroff -f
