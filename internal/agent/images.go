package agent

import (
	"os"

	"github.com/strata-cloud/strata/internal/storage/ociimage"
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
