package cloudinit

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kdomanski/iso9660"
)

func TestFiles(t *testing.T) {
	tests := []struct {
		name string
		seed Seed
		want map[string]string
	}{{
		name: "minimal",
		seed: Seed{InstanceID: "vm-1234", Hostname: "web-0"},
		want: map[string]string{
			MetaDataFile: "instance-id: vm-1234\nlocal-hostname: web-0\n",
			UserDataFile: "#cloud-config\n{}\n",
		},
	}, {
		name: "keys, user-data and network",
		seed: Seed{
			InstanceID: "3f1c",
			Hostname:   "db.example.org",
			PublicKeys: []string{"ssh-ed25519 AAAAC3Nza alice@laptop\n", "ssh-rsa AAAAB3 bob"},
			UserData:   []byte("#!/bin/sh\necho hello\n"),
			Network: &Network{Ethernets: map[string]Ethernet{"eth0": {
				Match:       &Match{MACAddress: "52:54:00:12:34:56"},
				SetName:     "eth0",
				Addresses:   []string{"10.0.0.5/24"},
				Routes:      []Route{{To: "0.0.0.0/0", Via: "10.0.0.1"}},
				Nameservers: &Nameservers{Addresses: []string{"10.96.0.10"}},
			}}},
		},
		want: map[string]string{
			MetaDataFile: "instance-id: 3f1c\nlocal-hostname: db.example.org\npublic-keys:\n- ssh-ed25519 AAAAC3Nza alice@laptop\n- ssh-rsa AAAAB3 bob\n",
			UserDataFile: "#!/bin/sh\necho hello\n",
			NetworkConfigFile: "ethernets:\n  eth0:\n    addresses:\n    - 10.0.0.5/24\n    match:\n      macaddress: \"52:54:00:12:34:56\"\n" +
				"    nameservers:\n      addresses:\n      - 10.96.0.10\n    routes:\n    - to: 0.0.0.0/0\n      via: 10.0.0.1\n    set-name: eth0\nversion: 2\n",
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.seed.Files()
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Errorf("files %v, want %d", keys(got), len(tt.want))
			}
			for name, want := range tt.want {
				if string(got[name]) != want {
					t.Errorf("%s:\n%s\nwant:\n%s", name, got[name], want)
				}
			}
		})
	}
}

func keys(m map[string][]byte) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	return k
}

func TestValidate(t *testing.T) {
	bad := []Seed{
		{Hostname: "a"},
		{InstanceID: "x\ny", Hostname: "a"},
		{InstanceID: "x", Hostname: ""},
		{InstanceID: "x", Hostname: "bad_name"},
		{InstanceID: "x", Hostname: "-a"},
		{InstanceID: "x", Hostname: "a", PublicKeys: []string{"justonefield"}},
		{InstanceID: "x", Hostname: "a", PublicKeys: []string{"ssh-rsa AAA\nssh-rsa BBB"}},
		{InstanceID: "x", Hostname: "a", Network: &Network{}},
	}
	for i, s := range bad {
		if _, err := s.Files(); err == nil {
			t.Errorf("seed %d (%+v): no error", i, s)
		}
	}
}

func TestWriteISO(t *testing.T) {
	seed := Seed{
		InstanceID: "i-1", Hostname: "vm1",
		UserData: []byte("#cloud-config\nruncmd: [echo hi]\n"),
		Network:  &Network{Ethernets: map[string]Ethernet{"eth0": {DHCP4: true}}},
	}
	want, err := seed.Files()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "seed.iso")
	if err := WriteISO(path, seed); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := iso9660.OpenImage(f)
	if err != nil {
		t.Fatal(err)
	}
	label, err := img.Label()
	if err != nil || strings.TrimRight(label, " ") != VolumeLabel {
		t.Errorf("label %q (%v), want %q", label, err, VolumeLabel)
	}
	root, err := img.RootDir()
	if err != nil {
		t.Fatal(err)
	}
	children, err := root.GetChildren()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range children {
		b, err := io.ReadAll(c.Reader())
		if err != nil {
			t.Fatal(err)
		}
		got[c.Name()] = string(b)
	}
	if len(got) != len(want) {
		t.Errorf("ISO holds %v", got)
	}
	for name, content := range want {
		if got[name] != string(content) {
			t.Errorf("%s on the ISO = %q, want %q", name, got[name], content)
		}
	}
	// ISO9660 sectors are 2 KiB; the image is small.
	if st, _ := f.Stat(); st.Size()%2048 != 0 || st.Size() > 1<<20 {
		t.Errorf("ISO size %d", st.Size())
	}
}
