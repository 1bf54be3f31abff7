package cli

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/strata-cloud/strata/internal/server"
)

func newOpenrcCmd() *cobra.Command {
	var dataDir, project, user, password string
	cmd := &cobra.Command{
		Use:   "openrc",
		Short: "Print the environment of the openstack CLI for the local server (source <(strata openrc))",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := server.AdminKubeconfig(dataDir)
			restConfig, err := clientcmd.BuildConfigFromFlags("", path)
			if err != nil {
				return fmt.Errorf("%s: %w (is `strata server --data-dir %s` initialised?)", path, err, dataDir)
			}
			u, err := url.Parse(restConfig.Host)
			if err != nil || u.Hostname() == "" {
				return fmt.Errorf("%s: server %q is not a URL with a host", path, restConfig.Host)
			}
			port := server.DefaultOpenStackPort
			if client, err := kubernetes.NewForConfig(restConfig); err == nil {
				ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
				cm, err := client.CoreV1().ConfigMaps(metav1.NamespacePublic).Get(ctx, "cluster-info", metav1.GetOptions{})
				cancel()
				if err == nil {
					if p, err := strconv.Atoi(cm.Data[server.OpenStackPortKey]); err == nil {
						port = p
					}
				}
			}
			if port == 0 {
				return fmt.Errorf("the server at %s runs no OpenStack APIs (--openstack-port 0)", restConfig.Host)
			}
			if password == "" && user == "admin" {
				data, err := os.ReadFile(server.OpenStackAdminPasswordFile(dataDir))
				if err != nil {
					return fmt.Errorf("the admin password: %w (run as the server's user, or pass --password)", err)
				}
				password = strings.TrimSpace(string(data))
			}
			authURL := "https://" + net.JoinHostPort(u.Hostname(), strconv.Itoa(port)) + "/identity/v3"
			out := cmd.OutOrStdout()
			for _, kv := range [][2]string{
				{"OS_AUTH_URL", authURL},
				{"OS_IDENTITY_API_VERSION", "3"},
				{"OS_AUTH_TYPE", "password"},
				{"OS_USERNAME", user},
				{"OS_USER_DOMAIN_NAME", "Default"},
				{"OS_PROJECT_NAME", project},
				{"OS_PROJECT_DOMAIN_NAME", "Default"},
				{"OS_REGION_NAME", "RegionOne"},
				{"OS_INTERFACE", "public"},
				{"OS_CACERT", server.CAFile(dataDir)},
			} {
				fmt.Fprintf(out, "export %s=%s\n", kv[0], shellQuote(kv[1]))
			}
			if password != "" {
				fmt.Fprintf(out, "export OS_PASSWORD=%s\n", shellQuote(password))
			} else {
				fmt.Fprintf(out, "# the password of %s is not known here: export OS_PASSWORD=...\n", user)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data-dir", defaultDataDir(), "the server's data directory")
	f.StringVar(&project, "project", "admin", "project (Kubernetes namespace) to scope to")
	f.StringVar(&user, "user", "admin", "user name")
	f.StringVar(&password, "password", "", "the user's password (default: admin's, from the data directory)")
	return cmd
}

// shellQuote quotes s for POSIX shells.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
