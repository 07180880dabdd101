package artifact

import (
	"fmt"
	"os"
)

// NewestKernel returns the kernel a node of the image at rootfs boots when
// it names none ("boot/vmlinuz-V", highest V), or "" when there is none.
func NewestKernel(rootfs string) (string, error) {
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return "", fmt.Errorf("open image: %w", err)
	}
	defer root.Close()
	return newestKernel(root)
}
