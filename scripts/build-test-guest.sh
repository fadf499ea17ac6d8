#!/usr/bin/env bash
# Builds the tiny test guest: Debian's cloud kernel and a busybox-static
# initramfs that gives a root shell on ttyS0, with the virtio PCI, block and
# net drivers loaded so hot-plugged disks and NICs appear in the guest.
# Cached: a second run with the files of this recipe in place does nothing.
# Output: $GUEST_DIR/vmlinuz, $GUEST_DIR/initrd.img
set -euo pipefail

GUEST_DIR=${PANEL_TEST_GUEST_DIR:-/var/lib/libvirt/boot/panel-test-guest}
# Bump when the guest's contents change, so machines with an older build rebuild.
RECIPE=3

if [ -s "$GUEST_DIR/vmlinuz" ] && [ -s "$GUEST_DIR/initrd.img" ] &&
  [ "$(cat "$GUEST_DIR/recipe" 2>/dev/null)" = "$RECIPE" ]; then
  exit 0
fi

need=()
command -v busybox >/dev/null || [ -x /bin/busybox ] || need+=(busybox-static)
command -v cpio >/dev/null || need+=(cpio)
if [ ${#need[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$GUEST_DIR"

# The kernel: the metapackage names the versioned image package to fetch.
resolve_kernel() {
  apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}'
}
kpkg=$(resolve_kernel)
if [ -z "$kpkg" ]; then
  # A machine whose package lists were never fetched knows no kernel package yet.
  apt-get update -q >/dev/null
  kpkg=$(resolve_kernel)
fi
if [ -z "$kpkg" ]; then
  echo "build-test-guest: cannot resolve linux-image-cloud-amd64; run apt-get update first" >&2
  exit 1
fi
(cd "$work" && apt-get download -q "$kpkg" >/dev/null)
dpkg-deb -x "$work"/linux-image-*.deb "$work/kernel"
cp "$work"/kernel/boot/vmlinuz-* "$GUEST_DIR/vmlinuz.tmp"

# The initramfs: busybox and an init that mounts the basics and keeps a root
# shell on the serial console.
root="$work/initramfs"
mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,etc,root}
cp /bin/busybox "$root/bin/busybox"
for applet in sh mount echo cat ls sleep poweroff reboot setsid cttyhack mkdir uname halt sync \
  insmod dd head; do
  ln -s busybox "$root/bin/$applet"
done
# Modules in load order (no depmod in the guest): virtio over PCI, then block and net.
modules="kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko
kernel/drivers/virtio/virtio_pci.ko kernel/drivers/block/virtio_blk.ko
kernel/net/core/failover.ko kernel/drivers/net/net_failover.ko kernel/drivers/net/virtio_net.ko"
mkdir -p "$root/lib/modules"
for m in $modules; do
  cp "$work"/kernel/lib/modules/*/"$m" "$root/lib/modules/"
  basename "$m" >> "$root/lib/modules/order"
done
cat > "$root/init" <<'INIT'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m 2>/dev/null; done
echo "panel-test-guest ready"
while true; do
  setsid cttyhack sh -l
done
INIT
chmod 755 "$root/init"
echo 'PS1="guest# "; export PS1' > "$root/etc/profile"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -9) > "$GUEST_DIR/initrd.img.tmp"

mv "$GUEST_DIR/vmlinuz.tmp" "$GUEST_DIR/vmlinuz"
mv "$GUEST_DIR/initrd.img.tmp" "$GUEST_DIR/initrd.img"
chmod 644 "$GUEST_DIR/vmlinuz" "$GUEST_DIR/initrd.img"
echo "$RECIPE" > "$GUEST_DIR/recipe"
echo "test guest built in $GUEST_DIR"
