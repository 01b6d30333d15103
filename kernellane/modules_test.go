package kernellane

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// An excerpt of the Debian 6.1 cloud kernel's modules.dep and modules.builtin.
const testModulesDep = `kernel/fs/fuse/virtiofs.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko kernel/fs/fuse/fuse.ko
kernel/fs/fuse/fuse.ko:
kernel/fs/overlayfs/overlay.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/net/netfilter/ipvs/ip_vs.ko.xz: kernel/net/netfilter/nf_conntrack.ko.xz kernel/lib/libcrc32c.ko.xz
`

const testModulesBuiltin = `kernel/fs/ext4/ext4.ko
kernel/drivers/net/dummy.ko
`

func TestLoadOrder(t *testing.T) {
	idx, err := ParseModIndex(strings.NewReader(testModulesDep), strings.NewReader(testModulesBuiltin))
	require.NoError(t, err)
	order, err := idx.LoadOrder("virtio_pci", "virtiofs", "overlay", "dummy")
	require.NoError(t, err)
	require.Equal(t, []string{
		"kernel/drivers/virtio/virtio_ring.ko",
		"kernel/drivers/virtio/virtio.ko",
		"kernel/drivers/virtio/virtio_pci_modern_dev.ko",
		"kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
		"kernel/drivers/virtio/virtio_pci.ko",
		"kernel/fs/fuse/fuse.ko",
		"kernel/fs/fuse/virtiofs.ko",
		"kernel/fs/overlayfs/overlay.ko",
	}, order, "dependencies first, each once, built-in dummy skipped")

	_, err = idx.LoadOrder("9p")
	require.ErrorContains(t, err, "no module 9p")

	require.True(t, idx.Has("ip_vs"), "compressed module")
	require.True(t, idx.Has("dummy"), "built in")
	require.True(t, idx.Has("virtio-fs") == idx.Has("virtio_fs"), "- and _ alike")
	require.False(t, idx.Has("9pnet_virtio"))
}

func TestModName(t *testing.T) {
	require.Equal(t, "ip_vs", ModName("kernel/net/netfilter/ipvs/ip_vs.ko.xz"))
	require.Equal(t, "nf_conntrack", ModName("nf-conntrack"))
	require.Equal(t, "xt_MASQUERADE", ModName("kernel/net/netfilter/xt_MASQUERADE.ko"))
}
