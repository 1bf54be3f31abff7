package agent

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/strata-cloud/strata/internal/agent/helperbin"
	"github.com/strata-cloud/strata/internal/storage/ociimage"
	"github.com/strata-cloud/strata/internal/vm/launcherimage"
)

// DefaultImages are the images every node loads before its kubelet starts:
// the pause image, built by Strata itself, so no registry is ever needed
// to start a pod.
func DefaultImages() []ImageSource {
	return []ImageSource{{
		Name: PauseImage,
		Write: func(f *os.File) error {
			img, err := ociimage.Pause()
			if err != nil {
				return err
			}
			return ociimage.WriteTarball(f.Name(), PauseImage, img)
		},
	}}
}

// LauncherImage is the VM launcher image (internal/vm/launcherimage): the
// host's QEMU with its libraries and firmware, and the strata-launcher
// this build embeds (or, in a build that embeds none, the strata binary
// self run as `strata launcher`). It is named launcherimage.CurrentRef and
// by its content. It returns an error saying what to install when the
// host has no QEMU: such a node runs no VMs, and whoever adds the image to
// a node's Images should log that and go on.
func LauncherImage(self string) (ImageSource, error) {
	if err := launcherimage.Available(launcherimage.Options{}); err != nil {
		return ImageSource{}, err
	}
	return ImageSource{
		Name: launcherimage.CurrentRef,
		Write: func(f *os.File) error {
			var opts launcherimage.Options
			if exe, ok := helperbin.Get(helperbin.Launcher); ok {
				opts.Launcher = exe
			} else {
				exe, err := os.ReadFile(self)
				if err != nil {
					return fmt.Errorf("launcher image: %w", err)
				}
				opts.Launcher, opts.LauncherArgs = exe, []string{"launcher"}
			}
			_, err := launcherimage.WriteArchive(f.Name(), opts)
			return err
		},
	}, nil
}

// VMImages are the node's LateImages for VMs: the launcher image, or none
// (logged) on a host without QEMU.
func VMImages(self string, log *slog.Logger) []ImageSource {
	img, err := LauncherImage(self)
	if err != nil {
		log.Info("this node runs no virtual machines", "reason", err)
		return nil
	}
	return []ImageSource{img}
}
