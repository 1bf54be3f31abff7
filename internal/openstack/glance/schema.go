package glance

// schemas are the JSON schemas clients fetch from /v2/schemas/NAME to
// validate and complete images: the attributes this API serves, with
// custom properties as additional string properties.
func schemas() map[string]any {
	str := func(desc string, max int) map[string]any {
		s := map[string]any{"type": "string", "description": desc}
		if max > 0 {
			s["maxLength"] = max
		}
		return s
	}
	nullable := func(s map[string]any) map[string]any {
		s["type"] = []any{s["type"], "null"}
		return s
	}
	enum := func(desc string, values []string) map[string]any {
		e := []any{nil}
		for _, v := range values {
			e = append(e, v)
		}
		return map[string]any{"type": []any{"null", "string"}, "description": desc, "enum": e}
	}
	ro := func(s map[string]any) map[string]any {
		s["readOnly"] = true
		return s
	}
	integer := func(desc string) map[string]any {
		return map[string]any{"type": "integer", "description": desc}
	}
	boolean := func(desc string) map[string]any {
		return map[string]any{"type": "boolean", "description": desc}
	}
	dateTime := func(desc string) map[string]any {
		return ro(map[string]any{"type": "string", "description": desc})
	}
	uuidPattern := "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$"
	image := map[string]any{
		"name": "image",
		"properties": map[string]any{
			"id":               map[string]any{"type": "string", "description": "The image's ID (a UUID).", "pattern": uuidPattern},
			"name":             nullable(str("A name for the image; need not be unique.", 255)),
			"status":           ro(map[string]any{"type": "string", "description": "Where the image is in its life.", "enum": []any{"queued", "saving", "active", "killed", "deleted", "uploading", "importing", "pending_delete", "deactivated"}}),
			"visibility":       map[string]any{"type": "string", "description": "Who may see and use the image.", "enum": []any{"community", "public", "private", "shared"}},
			"protected":        boolean("A protected image cannot be deleted."),
			"os_hidden":        boolean("A hidden image is left out of default lists."),
			"checksum":         ro(nullable(str("MD5 of the image's data.", 32))),
			"os_hash_algo":     ro(nullable(str("The algorithm of os_hash_value.", 64))),
			"os_hash_value":    ro(nullable(str("The secure hash of the image's data.", 128))),
			"owner":            ro(nullable(str("The project owning the image.", 255))),
			"size":             ro(map[string]any{"type": []any{"null", "integer"}, "description": "Size of the image's data in bytes."}),
			"virtual_size":     ro(map[string]any{"type": []any{"null", "integer"}, "description": "Size of the disk the image holds, in bytes."}),
			"min_disk":         integer("Smallest root disk, in GiB, a server may boot the image on."),
			"min_ram":          integer("Smallest memory, in MiB, a server may boot the image with."),
			"container_format": enum("Format of the container.", containerFormats),
			"disk_format":      enum("Format of the disk (detected from the data once uploaded).", diskFormats),
			"created_at":       dateTime("When the image was created."),
			"updated_at":       dateTime("When the image was last changed."),
			"tags":             map[string]any{"type": "array", "description": "Tags of the image.", "items": map[string]any{"type": "string", "maxLength": 255}},
			"self":             ro(str("The image's URL.", 0)),
			"file":             ro(str("The URL of the image's data.", 0)),
			"schema":           ro(str("The URL of this schema.", 0)),
			"direct_url":       ro(str("Not shown by this cloud.", 0)),
			"locations":        map[string]any{"type": "array", "description": "Not shown by this cloud.", "items": map[string]any{"type": "object"}},
		},
		"additionalProperties": map[string]any{"type": "string"},
		"links": []any{
			map[string]any{"rel": "self", "href": "{self}"},
			map[string]any{"rel": "enclosure", "href": "{file}"},
			map[string]any{"rel": "describedby", "href": "{schema}"},
		},
	}
	images := map[string]any{
		"name":       "images",
		"properties": map[string]any{"images": map[string]any{"type": "array", "items": image}, "schema": map[string]any{"type": "string"}, "first": map[string]any{"type": "string"}, "next": map[string]any{"type": "string"}},
		"links": []any{
			map[string]any{"rel": "first", "href": "{first}"},
			map[string]any{"rel": "next", "href": "{next}"},
			map[string]any{"rel": "describedby", "href": "{schema}"},
		},
	}
	member := map[string]any{
		"name": "member",
		"properties": map[string]any{
			"image_id":   str("The image's ID.", 0),
			"member_id":  str("The project the image is shared with.", 0),
			"status":     map[string]any{"type": "string", "enum": []any{"pending", "accepted", "rejected"}},
			"created_at": dateTime("When the membership was created."),
			"updated_at": dateTime("When the membership was last changed."),
			"schema":     ro(str("The URL of this schema.", 0)),
		},
	}
	members := map[string]any{
		"name":       "members",
		"properties": map[string]any{"members": map[string]any{"type": "array", "items": member}, "schema": map[string]any{"type": "string"}},
		"links":      []any{map[string]any{"rel": "describedby", "href": "{schema}"}},
	}
	return map[string]any{"image": image, "images": images, "member": member, "members": members}
}
