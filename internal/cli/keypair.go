package cli

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	computev1alpha1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
	"github.com/strata-cloud/strata/internal/controller/keypair"
)

func newKeypairCmd() *cobra.Command {
	kp := &cobra.Command{Use: "keypair", Short: "Manage SSH key pairs for virtual machines"}
	var dataDir, namespace, publicKeyFile string
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a key pair; without --public-key, generate one and print its private key (only this once)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			var public string
			var private []byte
			if publicKeyFile != "" {
				data, err := os.ReadFile(publicKeyFile)
				if err != nil {
					return fmt.Errorf("--public-key: %w", err)
				}
				public = strings.TrimSpace(string(data))
				if _, err := keypair.Fingerprint(public); err != nil {
					return fmt.Errorf("--public-key %s: %w (want one OpenSSH public key line)", publicKeyFile, err)
				}
			} else {
				var err error
				if public, private, err = keypair.Generate(name); err != nil {
					return err
				}
			}
			restConfig, err := adminRESTConfig(dataDir)
			if err != nil {
				return err
			}
			client, err := dynamic.NewForConfig(restConfig)
			if err != nil {
				return err
			}
			obj := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": computev1alpha1.GroupVersion.String(),
				"kind":       "KeyPair",
				"metadata":   map[string]any{"name": name, "namespace": namespace},
				"spec":       map[string]any{"publicKey": public},
			}}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			_, err = client.Resource(computev1alpha1.GroupVersion.WithResource("keypairs")).Namespace(namespace).Create(ctx, obj, metav1.CreateOptions{})
			switch {
			case apierrors.IsAlreadyExists(err):
				return fmt.Errorf("key pair %s already exists in namespace %s", name, namespace)
			case err != nil:
				return fmt.Errorf("create key pair %s: %w", name, err)
			}
			if private != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "key pair %s created; its private key follows and is not stored anywhere\n", name)
				_, err = cmd.OutOrStdout().Write(private)
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "key pair %s imported\n", name)
			return nil
		},
	}
	create.Flags().StringVar(&dataDir, "data-dir", defaultDataDir(), "the server's data directory (its admin kubeconfig)")
	create.Flags().StringVarP(&namespace, "namespace", "n", "default", "namespace (project) of the key pair")
	create.Flags().StringVar(&publicKeyFile, "public-key", "", "import this OpenSSH public key file instead of generating a key")
	kp.AddCommand(create)
	return kp
}
