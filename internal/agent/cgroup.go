package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

const cgroupFS = "/sys/fs/cgroup"

// EnsureCgroupRoot creates the cgroup under which the kubelet puts all pods
// (its cgroupRoot) in every hierarchy, so that several nodes can share one
// machine without their kubelets managing each other's pods. "/" and ""
// are the machine's root and need nothing.
func EnsureCgroupRoot(root string) error {
	return ensureCgroupRoot(cgroupFS, root)
}

func ensureCgroupRoot(fs, root string) error {
	rel := strings.Trim(filepath.Clean("/"+root), "/")
	if rel == "" {
		return nil
	}
	if _, err := os.Stat(filepath.Join(fs, "cgroup.controllers")); err == nil {
		return os.MkdirAll(filepath.Join(fs, rel), 0o755) // cgroup v2: one tree
	}
	entries, err := os.ReadDir(fs)
	if err != nil {
		return fmt.Errorf("cgroup root %s: %w", root, err)
	}
	var errs []error
	for _, e := range entries {
		if !e.IsDir() { // cpu -> cpu,cpuacct and the like are symlinks
			continue
		}
		hierarchy := filepath.Join(fs, e.Name())
		dir := filepath.Join(hierarchy, rel)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			errs = append(errs, fmt.Errorf("cgroup root %s: %w", dir, err))
			continue
		}
		if strings.Contains(e.Name(), "cpuset") {
			// A new v1 cpuset admits no task until it has CPUs and memory nodes.
			errs = append(errs, inheritCpuset(hierarchy, rel))
		}
	}
	return errors.Join(errs...)
}

func inheritCpuset(hierarchy, rel string) error {
	parent := hierarchy
	for _, part := range strings.Split(rel, "/") {
		dir := filepath.Join(parent, part)
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			cur, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				return err
			}
			if strings.TrimSpace(string(cur)) != "" {
				continue
			}
			from, err := os.ReadFile(filepath.Join(parent, f))
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, f), from, 0o644); err != nil {
				return fmt.Errorf("%s: %w", filepath.Join(dir, f), err)
			}
		}
		parent = dir
	}
	return nil
}
