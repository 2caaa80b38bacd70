/* Unit tests for hv/: the domain XML builder and parser (golden files,
 * escaping, invalid specs) and every libvirt-facing call against libvirt's
 * in-process test driver (test:///default), which needs no daemon. Real
 * QEMU is left to the system tests on the namespace test bed, so that this
 * program never touches the machine's own libvirtd. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include <libvirt/libvirt.h>
#include "hv/hv.h"
#include "hv/hv-export.h"
#include "hv/hv-internal.h"
#include "hv/hv-migrate.h"
#include "hv/hv-backup.h"
#include "hv/hv-clone.h"
#include "hv/hv-snapshot.h"
#include "hv/hv-hardware.h"
#include "hv/hv-network.h"
#include "hv/hv-pool.h"
#include "util/util.h"

#define TEST_URI "test:///default"
/* The domain and pool that test:///default always has. */
#define TEST_DOMAIN_UUID "6695eb01-f6a4-8304-79aa-97f2502e193f"

static const char NASTY[] = "a<b>&c'd\"e]]>f&amp;g";

/* ---- helpers ---- */

/* tests/data: $ARMADA_TEST_DATA (meson test sets it), else found from
 * where this file was compiled, so the binary also runs by hand. */
static char *data_path(const char *rel) {
        const char *env = getenv("ARMADA_TEST_DATA");
        if (env && *env)
                return xasprintf("%s/%s", env, rel);
        char file[PATH_MAX];
        snprintf(file, sizeof file, "%s", __FILE__);
        if (file[0] != '/') {
                /* Relative to the build root, which is three levels above
                 * this executable (build/tests/unit/test_hv). */
                char exe[PATH_MAX];
                ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
                assert_true(n > 0);
                exe[n] = 0;
                char *root = dirname(dirname(dirname(exe)));
                _cleanup_free_ char *joined = xasprintf("%s/%s", root, __FILE__);
                assert_true(strlen(joined) < sizeof file);
                memcpy(file, joined, strlen(joined) + 1);
        }
        char *unit = dirname(file);  /* tests/unit */
        char *tests = dirname(unit); /* tests */
        return xasprintf("%s/data/%s", tests, rel);
}

static void assert_golden(const char *rel, const char *actual) {
        _cleanup_free_ char *path = data_path(rel);
        if (getenv("ARMADA_UPDATE_GOLDEN")) {
                assert_int_equal(file_write_atomic(path, actual, strlen(actual), 0644), 0);
                return;
        }
        _cleanup_free_ char *expected = NULL;
        size_t len;
        int r = file_read_all(path, &expected, &len);
        if (r < 0)
                fail_msg("cannot read golden file %s: %s", path, strerror(-r));
        if (strcmp(expected, actual) != 0)
                fail_msg("%s differs; got:\n%s", path, actual);
}

static HvDisk disk(const char *path, const char *format, const char *target, bool cdrom) {
        HvDisk d = { .cdrom = cdrom };
        snprintf(d.path, sizeof d.path, "%s", path);
        snprintf(d.format, sizeof d.format, "%s", format);
        snprintf(d.target, sizeof d.target, "%s", target);
        return d;
}

static HvDomainSpec typical_spec(void) {
        HvDomainSpec s = {
                .name = "web01",
                .uuid = "0b7a3c52-5a1e-4c1b-9d38-6f2a1e4c9a01",
                .domain_type = "kvm",
                .vcpus = 2,
                .memory_mib = 2048,
                .description = "Web server for the shop",
                .n_disks = 2,
                .network = "default",
                .vnc = true,
        };
        s.disks[0] = disk("/var/lib/armada/pool/web01.qcow2", "qcow2", "vda", false);
        s.disks[1] = disk("/srv/library/debian-12.iso", "raw", "sda", true);
        return s;
}

static xmlDoc *parse_strict(const char *xml) {
        return xmlReadMemory(xml, (int) strlen(xml), NULL, NULL,
                             XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
}

/* Text of the first element called name anywhere under n (malloc'd). */
static char *find_text(xmlNode *n, const char *name) {
        for (; n; n = n->next) {
                if (n->type == XML_ELEMENT_NODE && xmlStrEqual(n->name, BAD_CAST name)) {
                        xmlChar *t = xmlNodeGetContent(n);
                        char *s = xstrdup((const char *) t);
                        xmlFree(t);
                        return s;
                }
                char *s = find_text(n->children, name);
                if (s)
                        return s;
        }
        return NULL;
}

static char *find_attr(xmlNode *n, const char *elem, const char *attr) {
        for (; n; n = n->next) {
                if (n->type == XML_ELEMENT_NODE && xmlStrEqual(n->name, BAD_CAST elem)) {
                        xmlChar *t = xmlGetProp(n, BAD_CAST attr);
                        if (t) {
                                char *s = xstrdup((const char *) t);
                                xmlFree(t);
                                return s;
                        }
                }
                char *s = find_attr(n->children, elem, attr);
                if (s)
                        return s;
        }
        return NULL;
}

static HvConn *connect_test(void) {
        HvConn *c = NULL;
        int r = hv_connect(TEST_URI, 5, 3, NULL, NULL, &c);
        if (r < 0)
                fail_msg("hv_connect: %s", hv_last_error());
        return c;
}

static void closed(void *userdata, const char *reason) {
        (*(int *) userdata)++;
}

static const HvDomainInfo *find_domain(const HvDomainInfo *v, size_t n, const char *uuid) {
        for (size_t i = 0; i < n; i++)
                if (streq(v[i].uuid, uuid))
                        return &v[i];
        return NULL;
}

static HvState state_of(HvConn *c, const char *uuid) {
        HvState s = HV_STATE_NOSTATE;
        assert_int_equal(hv_domain_state(c, uuid, &s), 0);
        return s;
}

/* ---- pure tests ---- */

static void test_xml_uefi(void **state) {
        HvDomainSpec s = typical_spec();
        _cleanup_free_ char *bios = hv_domain_xml_build(&s);
        assert_non_null(bios);
        assert_null(strstr(bios, "firmware="));
        s.uefi = true;
        _cleanup_free_ char *efi = hv_domain_xml_build(&s);
        assert_non_null(efi);
        assert_non_null(strstr(efi, "<os firmware=\"efi\">"));
        HvDomainInfo info;
        assert_int_equal(hv_domain_xml_parse(efi, &info), 0);
        /* The test driver has no firmware to choose: no attribute there. */
        s.domain_type = "test";
        _cleanup_free_ char *test = hv_domain_xml_build(&s);
        assert_null(strstr(test, "firmware="));
}

static void expect_invalid(const HvDomainSpec *s, const char *needle);

#define INSTALLATION "6f1c2a9e-0b7d-4c3e-9a51-2d8e7f4b1c00"
#define OTHER_INSTALLATION "0e9d8c7b-6a5f-4e3d-8c2b-1a0f9e8d7c6b"

/* The marker: built into <metadata> under Armada's namespace, read back
 * with the VM id; absent, foreign-namespaced or malformed markers read as
 * they are (unmarked, ignored, "unknown"). */
static void test_xml_armada_marker(void **state) {
        HvDomainSpec s = typical_spec();
        s.name = NASTY;
        s.description = NASTY;
        s.installation_id = INSTALLATION;
        s.vm_id = 4242;
        _cleanup_free_ char *xml = hv_domain_xml_build(&s);
        assert_non_null(xml);
        assert_non_null(strstr(xml, "<metadata>"));
        assert_non_null(strstr(xml, "xmlns:armada=\"" HV_ARMADA_XMLNS "\""));
        assert_non_null(strstr(xml, "installation=\"" INSTALLATION "\""));
        assert_non_null(strstr(xml, "id=\"4242\""));
        xmlDoc *doc = parse_strict(xml);
        assert_non_null(doc);
        xmlFreeDoc(doc);

        HvDomainInfo info;
        assert_int_equal(hv_domain_xml_parse(xml, &info), 0);
        assert_string_equal(info.name, NASTY);
        assert_string_equal(info.armada_installation, INSTALLATION);
        assert_int_equal(info.armada_vm_id, 4242);

        /* Without an installation id: no marker at all. */
        s.installation_id = NULL;
        _cleanup_free_ char *plain = hv_domain_xml_build(&s);
        assert_non_null(plain);
        assert_null(strstr(plain, "metadata"));
        assert_int_equal(hv_domain_xml_parse(plain, &info), 0);
        assert_string_equal(info.armada_installation, "");
        assert_int_equal(info.armada_vm_id, 0);

        /* An installation id that is not a UUID is refused, never written. */
        s.installation_id = "x\" other=\"y";
        expect_invalid(&s, "installation id");

        /* As libvirt writes it back, next to other tools' metadata; the
         * same local name in another namespace is not Armada's. */
        static const char libvirt_xml[] =
                "<domain type='kvm'><name>m</name><uuid>" TEST_DOMAIN_UUID "</uuid>"
                "<metadata><x:vm xmlns:x='https://example.org/not-armada' installation='" OTHER_INSTALLATION "' id='1'/>"
                "<a:vm xmlns:a='" HV_ARMADA_XMLNS "' installation='" OTHER_INSTALLATION "' id='17'/></metadata>"
                "<memory>1024</memory></domain>";
        assert_int_equal(hv_domain_xml_parse(libvirt_xml, &info), 0);
        assert_string_equal(info.armada_installation, OTHER_INSTALLATION);
        assert_int_equal(info.armada_vm_id, 17);
        static const char other_ns_only[] =
                "<domain><name>m</name><metadata><x:vm xmlns:x='https://example.org/not-armada' installation='"
                OTHER_INSTALLATION "'/></metadata></domain>";
        assert_int_equal(hv_domain_xml_parse(other_ns_only, &info), 0);
        assert_string_equal(info.armada_installation, "");
        /* A marker without a valid installation is someone else's. */
        static const char malformed[] =
                "<domain><name>m</name><metadata><armada:vm xmlns:armada='" HV_ARMADA_XMLNS "' installation='&lt;b&gt;&amp;"
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' id='-3'/></metadata></domain>";
        assert_int_equal(hv_domain_xml_parse(malformed, &info), 0);
        assert_string_equal(info.armada_installation, "unknown");
        assert_int_equal(info.armada_vm_id, 0);
}


/* A clone's definition: the source's hardware kept (two NICs, a bridge, a
 * model, UEFI, boot order, maximum memory, a CD-ROM drive), its identity, MACs, CD media,
 * NVRAM path, VNC port/password, backing chain and Armada marker not; disks
 * by target (a disk the clone lacks removed, one the definition lacks
 * added); user strings escaped. */
static void test_clone_xml(void **state) {
        (void) state;
        static const char *src =
                "<domain type='kvm'>\n"
                "  <name>web01</name>\n"
                "  <uuid>0b6f3a52-1c2d-4e5f-8a9b-0c1d2e3f4a5b</uuid>\n"
                "  <description>the source</description>\n"
                "  <metadata><armada:vm xmlns:armada='" HV_ARMADA_XMLNS "' installation='11111111-2222-3333-4444-555555555555' id='7'/>"
                "<other:x xmlns:other='urn:other'>kept</other:x></metadata>\n"
                "  <memory unit='KiB'>2097152</memory>\n"
                "  <currentMemory unit='KiB'>1048576</currentMemory>\n"
                "  <vcpu placement='static' current='2'>4</vcpu>\n"
                "  <os firmware='efi'><type arch='x86_64' machine='pc-q35-7.2'>hvm</type>"
                "<nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'>/var/lib/libvirt/qemu/nvram/web01_VARS.fd</nvram>"
                "<boot dev='cdrom'/><boot dev='hd'/></os>\n"
                "  <devices>\n"
                "    <disk type='file' device='disk'><driver name='qemu' type='qcow2' cache='none'/>"
                "<source file='/pool/web01-vda.qcow2'/><backingStore type='file'><format type='qcow2'/><source file='/pool/base.qcow2'/></backingStore>"
                "<target dev='vda' bus='virtio'/></disk>\n"
                "    <disk type='volume' device='disk'><driver name='qemu' type='raw'/><source pool='p' volume='web01-vdb'/>"
                "<target dev='vdb' bus='virtio'/></disk>\n"
                "    <disk type='block' device='lun'><source dev='/dev/sdz'/><target dev='sdz' bus='scsi'/></disk>\n"
                "    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='/isos/install.iso'/>"
                "<target dev='sda' bus='sata'/><readonly/></disk>\n"
                "    <interface type='network'><mac address='52:54:00:aa:bb:01'/><source network='default'/><model type='virtio'/></interface>\n"
                "    <interface type='bridge'><mac address='52:54:00:aa:bb:02'/><source bridge='br0'/><target dev='vnet3'/>"
                "<model type='e1000'/></interface>\n"
                "    <graphics type='vnc' port='5901' autoport='no' listen='0.0.0.0' passwd='secret'><listen type='address' address='0.0.0.0'/></graphics>\n"
                "  </devices>\n"
                "</domain>\n";
        HvDomainSpec spec = { .name = "web01-copy & <co>", .uuid = "6695eb01-f6a4-8304-79aa-97f2502e1940", .domain_type = "qemu",
                              .vcpus = 4, .memory_mib = 2048, .description = "a \"clone\"", .vnc = true, .vnc_listen = "127.0.0.1",
                              .vnc_password = "pw&1", .installation_id = "99999999-2222-3333-4444-555555555555", .vm_id = 12 };
        spec.n_disks = 2;
        spec.disks[0] = (HvDisk) { .format = "qcow2", .target = "vda", .path = "/pool/web01-copy-vda.qcow2" };
        spec.disks[1] = (HvDisk) { .format = "qcow2", .target = "vdc", .path = "/pool/web01-copy-vdc.qcow2" };
        const char *macs[] = { "52:54:00:12:34:56" };
        _cleanup_free_ char *xml = hv_domain_xml_clone(src, &spec, macs, 1);
        assert_non_null(xml);
        HvDomainInfo info;
        assert_int_equal(hv_domain_xml_parse(xml, &info), 0);
        assert_string_equal(info.name, "web01-copy & <co>");
        assert_string_equal(info.uuid, spec.uuid);
        assert_string_equal(info.domain_type, "qemu");
        assert_string_equal(info.armada_installation, spec.installation_id);
        assert_int_equal(info.armada_vm_id, 12);
        assert_int_equal(info.memory_mib, 2048);
        /* disks: vda replaced (no backing chain), vdb and the LUN gone, vdc added, the CD-ROM drive kept */
        assert_int_equal(info.n_disks, 3);
        assert_string_equal(info.disks[0].target, "vda");
        assert_string_equal(info.disks[0].path, "/pool/web01-copy-vda.qcow2");
        assert_string_equal(info.disks[1].target, "sda");
        assert_true(info.disks[1].cdrom);
        assert_string_equal(info.disks[1].path, "");   /* the drive kept, empty */
        assert_null(strstr(xml, "install.iso"));
        assert_string_equal(info.disks[2].target, "vdc");
        assert_string_equal(info.disks[2].path, "/pool/web01-copy-vdc.qcow2");
        assert_null(strstr(xml, "base.qcow2"));
        assert_null(strstr(xml, "web01-vdb"));
        assert_null(strstr(xml, "/dev/sdz"));
        assert_non_null(strstr(xml, "cache=\"none\""));
        /* NICs: both, with their sources and models, without MACs or host device names */
        HvNic nics[HV_MAX_NICS];
        size_t n_nics;
        assert_int_equal(hv_domain_nics(xml, nics, &n_nics), 0);
        assert_int_equal(n_nics, 2);
        assert_string_equal(nics[0].type, "network");
        assert_string_equal(nics[0].source, "default");
        assert_string_equal(nics[0].mac, "52:54:00:12:34:56");
        assert_string_equal(nics[1].type, "bridge");
        assert_string_equal(nics[1].source, "br0");
        assert_string_equal(nics[1].model, "e1000");
        assert_string_equal(nics[1].mac, "");
        assert_null(strstr(xml, "vnet3"));
        /* firmware and boot order kept, NVRAM path not; the vCPU maximum kept */
        assert_non_null(strstr(xml, "firmware=\"efi\""));
        assert_non_null(strstr(xml, "<boot dev=\"cdrom\"/><boot dev=\"hd\"/>"));
        assert_null(strstr(xml, "nvram"));
        assert_non_null(strstr(xml, "current=\"2\">4</vcpu>"));
        /* VNC: a port of its own, the spec's listen address and password */
        assert_null(strstr(xml, "5901"));
        assert_null(strstr(xml, "secret"));
        assert_null(strstr(xml, "0.0.0.0"));
        assert_non_null(strstr(xml, "autoport=\"yes\""));
        assert_non_null(strstr(xml, "passwd=\"pw&amp;1\""));
        /* the source's marker gone, other metadata kept; the description the clone's, escaped */
        assert_null(strstr(xml, "11111111-2222"));
        assert_non_null(strstr(xml, ">kept<"));
        assert_non_null(strstr(xml, "<description>a \"clone\"</description>"));
        assert_non_null(strstr(xml, "<name>web01-copy &amp; &lt;co&gt;</name>"));
        assert_null(strstr(xml, "<name>web01</name>"));
        /* not a domain, or no spec name: refused */
        assert_null(hv_domain_xml_clone("<network><name>x</name></network>", &spec, NULL, 0));
        assert_null(hv_domain_xml_clone("<domain", &spec, NULL, 0));
        HvDomainSpec bad = spec;
        bad.name = "";
        assert_null(hv_domain_xml_clone(src, &bad, NULL, 0));
}

static void test_uri_normalize(void **state) {
        static const struct { const char *a, *b; bool same; } cases[] = {
                { "qemu+tcp://10.0.0.2/system", "qemu+tcp://10.0.0.2:16509/system", true },
                { "qemu+tcp://10.0.0.2/system", "QEMU+TCP://10.0.0.2/system/", true },
                { "qemu+tcp://Host.Example/system", "qemu+tcp://host.example/system", true },
                { "qemu+tls://h/system", "qemu+tls://h:16514/system", true },
                { "qemu://h/system", "qemu://h:16514/system", true },
                { "qemu+ssh://root@h/system", "qemu+ssh://root@h:22/system", true },
                { "qemu+ssh://[fe80::1]:22/system", "qemu+ssh://[FE80::1]/system", true },
                { "qemu:///system", "qemu://localhost/system", true },
                { "test:///default", "TEST:///default", true },
                { "qemu+tcp://10.0.0.2/system", "qemu+tcp://10.0.0.3/system", false },
                { "qemu+tcp://10.0.0.2/system", "qemu+tcp://10.0.0.2:16510/system", false },
                { "qemu+tcp://10.0.0.2/system", "qemu+tcp://10.0.0.2/session", false },
                { "qemu+tcp://10.0.0.2/system", "qemu+tcp://10.0.0.2/system?no_verify=1", false },
                { "qemu+ssh://root@h/system", "qemu+ssh://admin@h/system", false },
                { "test:///default", "test:///tmp/a.xml", false },
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                _cleanup_free_ char *a = hv_uri_normalize(cases[i].a);
                _cleanup_free_ char *b = hv_uri_normalize(cases[i].b);
                if ((strcmp(a, b) == 0) != cases[i].same)
                        fail_msg("'%s' -> '%s' and '%s' -> '%s' should %sbe the same", cases[i].a, a, cases[i].b, b,
                                 cases[i].same ? "" : "not ");
        }
        _cleanup_free_ char *n = hv_uri_normalize("QEMU+TCP://Host:16509/system/");
        assert_string_equal(n, "qemu+tcp://host/system");
        _cleanup_free_ char *odd = hv_uri_normalize("not a uri");
        assert_string_equal(odd, "not a uri");
        assert_true(hv_uri_is_test("test:///default"));
        assert_true(hv_uri_is_test("test+unix:///x"));
        assert_false(hv_uri_is_test("testing:///x"));
        assert_false(hv_uri_is_test("qemu:///system"));
        assert_false(hv_uri_is_test(NULL));
}

static void test_state_names(void **state) {
        assert_string_equal(hv_state_name(HV_STATE_RUNNING), "running");
        assert_string_equal(hv_state_name(HV_STATE_BLOCKED), "running");
        assert_string_equal(hv_state_name(HV_STATE_PAUSED), "paused");
        assert_string_equal(hv_state_name(HV_STATE_SHUTOFF), "stopped");
        assert_string_equal(hv_state_name(HV_STATE_SHUTDOWN), "shutting-down");
        assert_string_equal(hv_state_name(HV_STATE_CRASHED), "crashed");
        assert_string_equal(hv_state_name(HV_STATE_PMSUSPENDED), "suspended");
        assert_string_equal(hv_state_name(HV_STATE_NOSTATE), "unknown");
        assert_string_equal(hv_state_name((HvState) 42), "unknown");
}

static void test_build_golden_typical(void **state) {
        HvDomainSpec s = typical_spec();
        _cleanup_free_ char *xml = hv_domain_xml_build(&s);
        assert_non_null(xml);
        assert_golden("hv/domain-typical.xml", xml);
}

static void test_build_golden_minimal(void **state) {
        /* No uuid, description, NIC or VNC; an installer CD first. */
        HvDomainSpec s = {
                .name = "tiny",
                .domain_type = "qemu",
                .vcpus = 1,
                .memory_mib = 128,
                .n_disks = 2,
        };
        s.disks[0] = disk("", "", "hdc", true); /* empty drive */
        s.disks[1] = disk("/pool/tiny.img", "raw", "vda", false);
        _cleanup_free_ char *xml = hv_domain_xml_build(&s);
        assert_non_null(xml);
        assert_golden("hv/domain-minimal.xml", xml);
}

static void test_build_escapes_round_trip(void **state) {
        HvDomainSpec s = typical_spec();
        char path[256], iso[256];
        snprintf(path, sizeof path, "/var/lib/%s/x.qcow2", NASTY);
        snprintf(iso, sizeof iso, "/srv/%s.iso", NASTY);
        const char *desc = "line 1: <script>alert('x')</script>\n"
                           "line 2: & \"quoted\" ]]> <!-- not a comment -->\n"
                           "<!DOCTYPE x [<!ENTITY e \"boom\">]>&e; \xc3\xa9t\xc3\xa9";
        s.name = NASTY;
        s.description = desc;
        s.network = NASTY;
        s.disks[0] = disk(path, "qcow2", "vda", false);
        s.disks[1] = disk(iso, "raw", "hdc", true);

        _cleanup_free_ char *xml = hv_domain_xml_build(&s);
        assert_non_null(xml);
        /* Nothing the user typed appears unescaped. */
        assert_null(strstr(xml, "<b>"));
        assert_null(strstr(xml, "<script>"));
        assert_null(strstr(xml, "&c"));
        assert_null(strstr(xml, "<!DOCTYPE"));
        assert_null(strstr(xml, "<!--"));

        /* Well-formed for a strict parser, and libxml2 reads back exactly
         * what went in, including the parts hv_domain_xml_parse ignores. */
        xmlDoc *doc = parse_strict(xml);
        assert_non_null(doc);
        assert_null(doc->intSubset);
        xmlNode *root = xmlDocGetRootElement(doc);
        assert_string_equal((const char *) root->name, "domain");
        _cleanup_free_ char *got_desc = find_text(root, "description");
        _cleanup_free_ char *got_net = find_attr(root, "source", "network");
        assert_string_equal(got_desc, desc);
        assert_string_equal(got_net, NASTY);
        xmlFreeDoc(doc);

        HvDomainInfo info;
        assert_int_equal(hv_domain_xml_parse(xml, &info), 0);
        assert_string_equal(info.name, NASTY);
        assert_string_equal(info.uuid, s.uuid);
        assert_string_equal(info.domain_type, "kvm");
        assert_int_equal(info.vcpus, 2);
        assert_int_equal(info.memory_mib, 2048);
        assert_int_equal(info.state, HV_STATE_NOSTATE);
        assert_int_equal(info.n_disks, 2);
        assert_string_equal(info.disks[0].path, path);
        assert_string_equal(info.disks[0].format, "qcow2");
        assert_string_equal(info.disks[0].target, "vda");
        assert_false(info.disks[0].cdrom);
        assert_string_equal(info.disks[1].path, iso);
        assert_string_equal(info.disks[1].target, "hdc");
        assert_true(info.disks[1].cdrom);
}

static void expect_invalid(const HvDomainSpec *s, const char *needle) {
        char *xml = hv_domain_xml_build(s);
        if (xml)
                fail_msg("expected a refusal mentioning '%s', got:\n%s", needle, xml);
        const char *e = hv_last_error();
        assert_true(strlen(e) > 20);
        if (!strstr(e, needle))
                fail_msg("error '%s' does not mention '%s'", e, needle);
}

static void test_build_invalid(void **state) {
        expect_invalid(NULL, "specification");

        HvDomainSpec s = typical_spec();
        s.name = NULL;
        expect_invalid(&s, "without a name");
        s.name = "";
        expect_invalid(&s, "without a name");
        s.name = "bad\nname";
        expect_invalid(&s, "control characters");
        s.name = "caf\xc3";
        expect_invalid(&s, "UTF-8");
        char longname[300];
        memset(longname, 'a', sizeof longname - 1);
        longname[sizeof longname - 1] = 0;
        s.name = longname;
        expect_invalid(&s, "255");

        s = typical_spec();
        s.vcpus = 0;
        expect_invalid(&s, "'web01': it asks for 0 virtual CPUs");
        s = typical_spec();
        s.memory_mib = 0;
        expect_invalid(&s, "0 MiB of memory");
        s = typical_spec();
        s.n_disks = HV_MAX_DISKS + 1;
        expect_invalid(&s, "9 disks");
        s = typical_spec();
        s.domain_type = "xen";
        expect_invalid(&s, "domain type");
        s.domain_type = NULL;
        expect_invalid(&s, "domain type");
        s = typical_spec();
        s.uuid = "not-a-uuid";
        expect_invalid(&s, "'not-a-uuid' is not a UUID");
        s = typical_spec();
        s.network = "";
        expect_invalid(&s, "network");
        s = typical_spec();
        s.description = "bell\a";
        expect_invalid(&s, "description");

        s = typical_spec();
        snprintf(s.disks[1].target, sizeof s.disks[1].target, "vda");
        s.disks[1].cdrom = false;
        expect_invalid(&s, "two disks have target 'vda'");
        s = typical_spec();
        snprintf(s.disks[1].target, sizeof s.disks[1].target, "vdb");
        expect_invalid(&s, "CD-ROM 'vdb'");
        s = typical_spec();
        snprintf(s.disks[0].target, sizeof s.disks[0].target, "xvda");
        expect_invalid(&s, "target 'xvda'");
        snprintf(s.disks[0].target, sizeof s.disks[0].target, "vd");
        expect_invalid(&s, "target 'vd'");
        s = typical_spec();
        snprintf(s.disks[0].format, sizeof s.disks[0].format, "vmdk");
        expect_invalid(&s, "format 'vmdk'");
        s = typical_spec();
        s.disks[0].path[0] = 0;
        expect_invalid(&s, "empty path");
        s = typical_spec();
        memset(s.disks[0].path, 'x', sizeof s.disks[0].path);
        expect_invalid(&s, "NUL");

        /* And a good one still builds after all that. */
        s = typical_spec();
        char *xml = hv_domain_xml_build(&s);
        assert_non_null(xml);
        free(xml);
}

/* A spec with three NICs builds three <interface>s in order, each on its
 * network with its MAC (or none), and hv_domain_nics() reads them back;
 * further NICs without a first, or too many, are refused. */
static void test_build_more_nics(void **state) {
        HvDomainSpec s = typical_spec();
        s.network_mac = "52:54:00:00:00:01";
        s.n_more_nics = 2;
        s.more_networks[0] = "back<&>";
        s.more_macs[0] = "52:54:00:00:00:02";
        s.more_networks[1] = "dmz";
        char *xml = hv_domain_xml_build(&s);
        assert_non_null(xml);
        HvNic nics[HV_MAX_NICS];
        size_t n = 0;
        assert_int_equal(hv_domain_nics(xml, nics, &n), 0);
        assert_int_equal(n, 3);
        assert_string_equal(nics[0].source, "default");
        assert_string_equal(nics[0].mac, "52:54:00:00:00:01");
        assert_string_equal(nics[1].source, "back<&>");
        assert_string_equal(nics[1].mac, "52:54:00:00:00:02");
        assert_string_equal(nics[2].source, "dmz");
        assert_string_equal(nics[2].mac, "");
        assert_string_equal(nics[2].model, "virtio");
        free(xml);

        s.network = NULL;
        expect_invalid(&s, "without a first");
        s = typical_spec();
        s.n_more_nics = HV_SPEC_MORE_NICS + 1;
        expect_invalid(&s, "more network cards than 8");
        s = typical_spec();
        s.n_more_nics = 1;
        s.more_networks[0] = "";
        expect_invalid(&s, "network card 2");
        (void) state;
}

static void test_parse_libvirt_xml(void **state) {
        /* The shape virsh dumpxml prints: KiB, addresses, extra devices. */
        const char *xml =
                "<domain type='kvm' id='3'>\n"
                "  <name>db&amp;1</name>\n"
                "  <uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid>\n"
                "  <metadata><a:vm xmlns:a='urn:x'><a:name>not this</a:name></a:vm></metadata>\n"
                "  <memory unit='KiB'>8388608</memory>\n"
                "  <currentMemory unit='KiB'>2097152</currentMemory>\n"
                "  <vcpu placement='static' current='3'>8</vcpu>\n"
                "  <devices>\n"
                "    <emulator>/usr/bin/qemu-system-x86_64</emulator>\n"
                "    <disk type='block' device='disk'><driver name='qemu' type='raw'/>"
                "<source dev='/dev/vg/db1'/><target dev='vda' bus='virtio'/></disk>\n"
                "    <disk type='file' device='floppy'><source file='/f.img'/><target dev='fda'/></disk>\n"
                "    <disk type='volume' device='disk'><driver name='qemu' type='qcow2'/>"
                "<source pool='p1' volume='v1'/><target dev='vdb' bus='virtio'/></disk>\n"
                "    <disk type='file' device='cdrom'><target dev='sda' bus='sata'/><readonly/></disk>\n"
                "  </devices>\n"
                "</domain>\n";
        HvDomainInfo info;
        assert_int_equal(hv_domain_xml_parse(xml, &info), 0);
        assert_string_equal(info.name, "db&1");
        assert_string_equal(info.uuid, TEST_DOMAIN_UUID);
        assert_string_equal(info.domain_type, "kvm");
        assert_int_equal(info.memory_mib, 8192);
        assert_int_equal(info.vcpus, 3);
        assert_false(info.persistent);
        assert_int_equal(info.n_disks, 3);
        assert_string_equal(info.disks[0].path, "/dev/vg/db1");
        assert_string_equal(info.disks[0].format, "raw");
        assert_string_equal(info.disks[1].path, "p1/v1");
        assert_string_equal(info.disks[1].target, "vdb");
        assert_true(info.disks[2].cdrom);
        assert_string_equal(info.disks[2].path, "");
        assert_int_equal(info.disks[2].capacity_bytes, 0);

        /* Units libvirt accepts; a byte over a MiB rounds up. */
        assert_int_equal(hv_domain_xml_parse("<domain type='qemu'><name>m</name>"
                                             "<memory unit='GiB'>3</memory><vcpu>1</vcpu></domain>",
                                             &info), 0);
        assert_int_equal(info.memory_mib, 3072);
        assert_int_equal(hv_domain_xml_parse("<domain type='qemu'><name>m</name>"
                                             "<memory unit='b'>1048577</memory></domain>", &info), 0);
        assert_int_equal(info.memory_mib, 2);
        assert_int_equal(hv_domain_xml_parse("<domain type='qemu'><name>m</name>"
                                             "<memory>1024</memory></domain>", &info), 0);
        assert_int_equal(info.memory_mib, 1);

        /* More disks than Armada keeps: the first HV_MAX_DISKS. */
        StrBuf b = {0};
        strbuf_append(&b, "<domain type='kvm'><name>many</name><devices>");
        for (int i = 0; i < 12; i++)
                strbuf_printf(&b, "<disk device='disk'><source file='/d%d'/><target dev='vd%c'/></disk>",
                              i, 'a' + i);
        strbuf_append(&b, "</devices></domain>");
        _cleanup_free_ char *many = strbuf_steal(&b);
        assert_int_equal(hv_domain_xml_parse(many, &info), 0);
        assert_int_equal(info.n_disks, HV_MAX_DISKS);
        assert_string_equal(info.disks[7].path, "/d7");
}

static void test_parse_rejects(void **state) {
        HvDomainInfo info = { .name = "untouched" };
        static const char *const bad[] = {
                "",
                "<domain",
                "<domain type='kvm'><name>x</name>",
                "<pool type='dir'><name>x</name></pool>",
                "<domain type='kvm'><uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid></domain>",
                "<domain type='kvm'><name>x</name><memory unit='parsec'>1</memory></domain>",
                "<domain type='kvm'><name>x</name><memory>-1</memory></domain>",
                "<domain type='kvm'><name>x</name><vcpu>many</vcpu></domain>",
                "<domain type='kvm'><name>&undefined;</name></domain>",
                "<domain type='averyveryverylongtype'><name>x</name></domain>",
                /* Entity expansion is refused with the DTD it needs. */
                "<?xml version='1.0'?><!DOCTYPE domain [<!ENTITY a 'aaaaaaaaaa'>"
                "<!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;'>]>"
                "<domain type='kvm'><name>&b;</name></domain>",
                "<!DOCTYPE domain SYSTEM 'http://127.0.0.1:1/x.dtd'><domain type='kvm'><name>x</name></domain>",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                int r = hv_domain_xml_parse(bad[i], &info);
                if (r != -EINVAL)
                        fail_msg("'%s' gave %d, not -EINVAL", bad[i], r);
                assert_true(strlen(hv_last_error()) > 10);
                assert_string_equal(info.name, "untouched");
        }
        assert_int_equal(hv_domain_xml_parse(NULL, &info), -EINVAL);

        char longpath[1100];
        memset(longpath, 'p', sizeof longpath - 1);
        longpath[sizeof longpath - 1] = 0;
        _cleanup_free_ char *xml = xasprintf("<domain type='kvm'><name>x</name><devices><disk device='disk'>"
                                             "<source file='/%s'/></disk></devices></domain>", longpath);
        assert_int_equal(hv_domain_xml_parse(xml, &info), -EINVAL);
        assert_non_null(strstr(hv_last_error(), "disk path"));
}

/* ---- against libvirt's test driver ---- */

static void test_connect_and_host_info(void **state) {
        assert_int_equal(hv_init(), 0);
        assert_int_equal(hv_init(), 0); /* idempotent */

        int closes = 0;
        HvConn *c = NULL;
        assert_int_equal(hv_connect(TEST_URI, 5, 3, closed, &closes, &c), 0);
        assert_non_null(c);
        assert_true(hv_conn_alive(c));

        HvHostInfo h;
        memset(&h, 0xff, sizeof h);
        assert_int_equal(hv_host_info(c, &h), 0);
        assert_true(h.cpus > 0);
        assert_true(h.memory_mib > 0);
        assert_true(h.free_memory_mib <= h.memory_mib);
        assert_string_equal(h.hv_driver, "TEST");
        assert_false(h.kvm); /* the test driver offers i686 'test' guests only */
        assert_string_equal(h.default_domain_type, "test");
        assert_string_equal(h.uuid, ""); /* the test driver has no host UUID: Armada falls back to the URI */
        assert_true(strlen(h.hostname) > 0);
        assert_non_null(memchr(h.hostname, 0, sizeof h.hostname));

        assert_null(hv_conn_free(c));
        assert_int_equal(closes, 0); /* our own close is not a failure */
        assert_null(hv_conn_free(NULL));
        assert_false(hv_conn_alive(NULL));

        /* Without keepalive, too. */
        assert_int_equal(hv_connect(TEST_URI, 0, 0, NULL, NULL, &c), 0);
        c = hv_conn_free(c);

        HvConn *bad = (HvConn *) 0x1;
        assert_true(hv_connect("test:///nonexistent-armada/host.xml", 5, 3, NULL, NULL, &bad) < 0);
        assert_ptr_equal(bad, (HvConn *) 0x1); /* untouched on failure */
        assert_non_null(strstr(hv_last_error(), "cannot connect to 'test:///nonexistent-armada/host.xml'"));
        /* A remote URI where nothing listens (loopback, port 1): refused at
         * once, never the machine's own libvirtd. */
        assert_true(hv_connect("qemu+tcp://127.0.0.1:1/system", 5, 3, NULL, NULL, &bad) < 0);
        assert_ptr_equal(bad, (HvConn *) 0x1);
        assert_non_null(strstr(hv_last_error(), "'qemu+tcp://127.0.0.1:1/system'"));
        assert_int_equal(hv_connect("", 5, 3, NULL, NULL, &bad), -EINVAL);
        assert_int_equal(hv_connect(NULL, 5, 3, NULL, NULL, &bad), -EINVAL);
        /* The last line of defence: a URI that runs a program is never opened. */
        assert_int_equal(hv_connect("qemu+ext:///system?command=/bin/true", 5, 3, NULL, NULL, &bad), -EPERM);
        assert_ptr_equal(bad, (HvConn *) 0x1);
        assert_non_null(strstr(hv_last_error(), "refusing to connect"));
}

/* ---- URI allow-list ---- */

static void test_uri_check(void **state) {
        static const struct {
                const char *uri;
                bool allow_test; /* with --allow-test-hosts */
                bool ok;
                const char *why; /* a part of the reason, for refusals */
        } cases[] = {
                { "qemu:///system", false, true, NULL },
                { "qemu:///session", false, true, NULL },
                { "qemu+tcp://10.0.0.2/system", false, true, NULL },
                { "qemu+tcp://10.0.0.2:16509/system", false, true, NULL },
                { "qemu+tls://kvm7.example.com/system", false, true, NULL },
                { "qemu://kvm7.example.com/system", false, true, NULL },
                { "qemu+ssh://u@h/system?keyfile=/k&no_verify=1", false, true, NULL },
                { "qemu+ssh://root@kvm2.example.com:2222/system?keyfile=/root/.ssh/id&known_hosts=/etc/armada/kh", false, true, NULL },
                { "qemu+libssh2://u@h/system?sshauth=agent,privkey&known_hosts=/k", false, true, NULL },
                { "qemu+tcp://[::1]/system", false, true, NULL },
                { "qemu+tcp://[fd00::2]:16509/system", false, true, NULL },
                { "esx://esx1.example.com/?no_verify=1", false, true, NULL },
                { "test:///default", true, true, NULL },
                { "test:///tmp/armada/node.xml", true, true, NULL },
                { "qemu+ssh://u@h/system?socket=/run/x.sock", true, true, NULL },
                /* programs, transports and parameters that are never allowed */
                { "qemu+ext:///system?command=/tmp/x", true, false, "transport 'qemu+ext'" },
                { "qemu+ext:///system", false, false, "transport 'qemu+ext'" },
                { "qemu:///system?command=x", true, false, "parameter 'command'" },
                { "qemu+ssh://h/system?netcat=/tmp/x", true, false, "parameter 'netcat'" },
                { "qemu+tcp://h/system?name=qemu:///embed", true, false, "parameter 'name'" },
                { "qemu+ssh://h/system?%63ommand=x", true, false, "parameter 'command'" },
                { "qemu+ssh://h/system?keyfile=/k;command=x", true, false, "parameter 'command'" },
                { "qemu+ssh://h/system?no_verify=1&%00command=x", true, false, "not plain text" },
                { "qemu+ssh://h/system?keyfile=-oProxyCommand=x", true, false, "value of parameter 'keyfile'" },
                { "qemu+ssh://h/system?keyfile=%2Fk%20x", true, false, "value of parameter 'keyfile'" },
                { "qemu+ssh://h/system?keyfile=/k%", true, false, "not a libvirt URI" },
                { "qemu+unix:///system", false, false, "transport 'qemu+unix'" },
                { "qemu+unix:///system?socket=/x", true, false, "transport 'qemu+unix'" },
                { "qemu+libssh://h/system", false, false, "transport 'qemu+libssh'" },
                { "QEMU:///system", false, false, "transport 'QEMU'" },
                { "qemu+EXT:///system", false, false, "transport 'qemu+EXT'" },
                { "Qemu+tcp://h/system", false, false, "transport" },
                { "xen:///system", false, false, "transport 'xen'" },
                { "qemu+ssh://-oProxyCommand=x/system", true, false, "server" },
                { "qemu+ssh://-oProxyCommand=x@h/system", true, false, "user name" },
                { "qemu:///embed?root=/tmp/x", true, false, "/system or /session" },
                { "qemu:///system%3Fcommand=x", true, false, "/system or /session" },
                { "qemu+tcp://h/system#frag", true, false, "fragment" },
                { "esx:///", false, false, "server" },
                /* the test driver reads any file: only with the flag, and
                 * test:///default itself too */
                { "test:///default", false, false, "--allow-test-hosts" },
                { "test:///etc/passwd", false, false, "--allow-test-hosts" },
                { "test://h/default", true, false, "no server" },
                { "test+tcp://h/default", true, false, "transport 'test+tcp'" },
                { "qemu+ssh://u@h/system?socket=/run/x.sock", false, false, "parameter 'socket'" },
                /* not URIs */
                { "", true, false, "empty" },
                { "system", true, false, "not a libvirt URI" },
                { "qemu:system", true, false, "not a libvirt URI" },
                { "://system", true, false, "not a libvirt URI" },
                { "qemu+ssh://x/system; rm -rf /", true, false, "space" },
                { "qemu:///system\n", true, false, "space" },
                { "qemu:///syst\x01em", true, false, "space" },
                { "qemu:///system\"", true, false, "quote" },
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                char why[512] = "unchanged";
                int r = hv_uri_check(cases[i].uri, cases[i].allow_test, why, sizeof why);
                if (cases[i].ok && r != 0)
                        fail_msg("'%s' (allow_test %d) refused: %s", cases[i].uri, cases[i].allow_test, why);
                if (!cases[i].ok) {
                        if (r != -EINVAL)
                                fail_msg("'%s' (allow_test %d) allowed", cases[i].uri, cases[i].allow_test);
                        if (!strstr(why, cases[i].why))
                                fail_msg("'%s': reason \"%s\" lacks \"%s\"", cases[i].uri, why, cases[i].why);
                }
        }
        assert_int_equal(hv_uri_check(NULL, true, NULL, 0), -EINVAL);
        assert_int_equal(hv_uri_check("qemu+ext:///system", true, NULL, 0), -EINVAL);

        /* A migration hands its destination URI to the source's libvirtd:
         * the same allow-list applies there. */
        HvConn *c = connect_test();
        HvMigrateOptions o = { .dest_uri = "qemu+ext:///system?command=/bin/true" };
        assert_int_equal(hv_migrate(c, TEST_DOMAIN_UUID, &o), -EPERM);
        assert_non_null(strstr(hv_last_error(), "refusing to migrate"));
        hv_conn_free(c);
}

/* libvirt quotes a file a test: URI names when it is not the XML it wants;
 * that must reach the log (hv_last_error_detail), never hv_last_error(),
 * which clients see. */
static void test_connect_error_does_not_quote_the_file(void **state) {
        char path[] = "/tmp/armada-test-hv-XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        static const char text[] = "root:x:0:0:root:/root:/bin/sh\nARMADA-SECRET-MARKER\n";
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t) strlen(text));
        close(fd);
        _cleanup_free_ char *uri = xasprintf("test://%s", path);
        HvConn *c = NULL;
        int r = hv_connect(uri, 5, 3, NULL, NULL, &c);
        unlink(path);
        assert_true(r < 0);
        assert_null(c);
        assert_non_null(strstr(hv_last_error(), "cannot connect to"));
        assert_null(strstr(hv_last_error(), "root:x"));
        assert_null(strstr(hv_last_error(), "ARMADA-SECRET-MARKER"));
        /* libvirt's context is kept for the log. */
        assert_non_null(strstr(hv_last_error_detail(), "root:x"));
        /* and forgotten by the next failure */
        hv_domain_xml_parse("", &(HvDomainInfo) {0});
        assert_string_equal(hv_last_error_detail(), "");
}

static void test_pools_and_volumes(void **state) {
        HvConn *c = connect_test();

        /* The test driver's own pool keeps its path. */
        _cleanup_free_ char *dpath = NULL;
        assert_int_equal(hv_pool_ensure(c, "default-pool", "/ignored", &dpath), 0);
        assert_string_equal(dpath, "/default-pool");

        /* A new one, at a path with characters that need escaping. */
        char tmpl[] = "/tmp/armada-hv-XXXXXX";
        assert_non_null(mkdtemp(tmpl));
        _cleanup_free_ char *dir = xasprintf("%s/pool <&'\">", tmpl);
        _cleanup_free_ char *ppath = NULL;
        assert_int_equal(hv_pool_ensure(c, "armada", dir, &ppath), 0);
        assert_string_equal(ppath, dir);
        assert_int_equal(hv_pool_ensure(c, "armada", NULL, NULL), 0); /* again: nothing to do */
        assert_int_equal(hv_pool_ensure(c, "other", NULL, NULL), -EINVAL); /* needs a path */
        assert_int_equal(hv_pool_ensure(c, "other", "relative/dir", NULL), -EINVAL);
        assert_int_equal(hv_pool_ensure(c, "a/b", dir, NULL), -EINVAL);

        _cleanup_free_ char *vpath = NULL;
        assert_int_equal(hv_volume_create(c, "armada", "web01.qcow2", NULL, 1ull << 30, &vpath), 0);
        _cleanup_free_ char *want = xasprintf("%s/web01.qcow2", dir);
        assert_string_equal(vpath, want);

        char *dup = NULL;
        assert_int_equal(hv_volume_create(c, "armada", "web01.qcow2", "qcow2", 1 << 20, &dup), -EEXIST);
        assert_null(dup);
        assert_non_null(strstr(hv_last_error(), "already has one"));

        _cleanup_free_ char *rpath = NULL;
        assert_int_equal(hv_volume_create(c, "default-pool", "data.img", "raw", 1 << 20, &rpath), 0);
        assert_string_equal(rpath, "/default-pool/data.img");

        assert_int_equal(hv_volume_create(c, "armada", "x", "vmdk", 1 << 20, &dup), -EINVAL);
        assert_int_equal(hv_volume_create(c, "armada", "x", "qcow2", 0, &dup), -EINVAL);
        assert_int_equal(hv_volume_create(c, "armada", "../x", "qcow2", 1, &dup), -EINVAL);
        assert_int_equal(hv_volume_create(c, "no-such-pool", "x", "qcow2", 1 << 20, &dup), -ENOENT);
        assert_non_null(strstr(hv_last_error(), "'no-such-pool'"));

        assert_int_equal(hv_volume_delete(c, vpath), 0);
        assert_int_equal(hv_volume_delete(c, vpath), -ENOENT);
        assert_non_null(strstr(hv_last_error(), vpath));
        assert_int_equal(hv_volume_delete(c, rpath), 0);
        assert_int_equal(hv_volume_delete(c, "/nowhere/at/all"), -ENXIO); /* no pool there: it may exist */
        assert_int_equal(hv_volume_delete(c, ""), -EINVAL);

        hv_conn_free(c);
        rmdir(tmpl);
}

/* A volume that no active pool of the host lists (as a file on shared
 * storage that another host made looks to this one) is never reported
 * deleted: hv says no pool holds it; once a pool lists it, it goes through
 * that pool. */
static void test_volume_delete_needs_a_pool(void **state) {
        HvConn *c = connect_test();
        _cleanup_free_ char *ppath = NULL;
        assert_int_equal(hv_pool_ensure(c, "far", "/far-shared", &ppath), 0);
        _cleanup_free_ char *vpath = NULL;
        assert_int_equal(hv_volume_create(c, "far", "far.qcow2", NULL, 1 << 20, &vpath), 0);
        HvLease l = { 0 };
        assert_int_equal(hv_lease_begin(c, &l), 0);
        virStoragePoolPtr p = virStoragePoolLookupByName(l.conn, "far");
        hv_lease_end(&l);
        assert_non_null(p);
        assert_int_equal(virStoragePoolDestroy(p), 0);
        assert_int_equal(hv_volume_delete(c, vpath), -ENXIO);
        assert_non_null(strstr(hv_last_error(), "no storage pool"));
        assert_non_null(strstr(hv_last_error(), vpath));
        assert_int_equal(virStoragePoolCreate(p, 0), 0);
        assert_int_equal(hv_volume_delete(c, vpath), 0);
        /* Gone now, and the pool over its directory says so. */
        assert_int_equal(hv_volume_delete(c, vpath), -ENOENT);
        virStoragePoolFree(p);
        hv_conn_free(c);
}

static void test_domain_lifecycle(void **state) {
        HvConn *c = connect_test();
        const char *uuid = "a3c8d0e2-1111-4a5b-8c9d-0e1f2a3b4c5d";
        HvDomainSpec s = typical_spec();
        s.name = "life01";
        s.uuid = uuid;
        s.domain_type = "test";
        s.description = NASTY;
        s.installation_id = INSTALLATION;
        s.vm_id = 7;
        assert_int_equal(hv_domain_define(c, &s), 0);

        HvDomainInfo *list = NULL;
        size_t n = 0;
        assert_int_equal(hv_list_domains(c, &list, &n), 0);
        assert_true(n >= 2); /* ours and the driver's own "test" */
        const HvDomainInfo *d = find_domain(list, n, uuid);
        assert_non_null(d);
        assert_string_equal(d->name, "life01");
        assert_string_equal(d->domain_type, "test");
        assert_int_equal(d->state, HV_STATE_SHUTOFF);
        assert_true(d->persistent);
        assert_int_equal(d->vcpus, 2);
        assert_int_equal(d->memory_mib, 2048);
        assert_int_equal(d->n_disks, 2);
        assert_string_equal(d->disks[0].path, "/var/lib/armada/pool/web01.qcow2");
        assert_string_equal(d->disks[0].target, "vda");
        assert_string_equal(d->disks[0].format, "qcow2");
        assert_true(d->disks[1].cdrom);
        /* The marker survives libvirt (it keeps <metadata> per namespace). */
        assert_string_equal(d->armada_installation, INSTALLATION);
        assert_int_equal(d->armada_vm_id, 7);
        const HvDomainInfo *t = find_domain(list, n, TEST_DOMAIN_UUID);
        assert_non_null(t);
        assert_string_equal(t->armada_installation, "");
        assert_int_equal(t->state, HV_STATE_RUNNING);
        free(list);

        HvDomainInfo one;
        assert_int_equal(hv_domain_get(c, uuid, &one), 0);
        assert_string_equal(one.name, "life01");

        /* Defining again with the same uuid updates in place. */
        s.vcpus = 4;
        assert_int_equal(hv_domain_define(c, &s), 0);
        assert_int_equal(hv_domain_get(c, uuid, &one), 0);
        assert_int_equal(one.vcpus, 4);

        assert_int_equal(state_of(c, uuid), HV_STATE_SHUTOFF);
        assert_int_equal(hv_domain_start(c, uuid), 0);
        assert_int_equal(state_of(c, uuid), HV_STATE_RUNNING);
        assert_int_equal(hv_domain_start(c, uuid), -EBUSY);
        assert_non_null(strstr(hv_last_error(), "cannot start VM 'life01'"));
        assert_int_equal(hv_domain_resume(c, uuid), -EBUSY);
        assert_int_equal(hv_domain_pause(c, uuid), 0);
        assert_int_equal(state_of(c, uuid), HV_STATE_PAUSED);
        assert_int_equal(hv_domain_pause(c, uuid), -EBUSY);
        assert_int_equal(hv_domain_resume(c, uuid), 0);
        assert_int_equal(state_of(c, uuid), HV_STATE_RUNNING);
        assert_int_equal(hv_domain_kill(c, uuid), 0);
        assert_int_equal(state_of(c, uuid), HV_STATE_SHUTOFF);
        assert_int_equal(hv_domain_kill(c, uuid), -EBUSY);
        assert_int_equal(hv_domain_stop(c, uuid), -EBUSY);
        assert_int_equal(hv_domain_pause(c, uuid), -EBUSY);
        assert_int_equal(hv_domain_resume(c, uuid), -EBUSY);
        assert_int_equal(hv_domain_start(c, uuid), 0);
        assert_int_equal(hv_domain_stop(c, uuid), 0);
        /* The test driver shuts down at once; QEMU would pass SHUTDOWN. */
        assert_int_equal(state_of(c, uuid), HV_STATE_SHUTOFF);

        /* A saved definition gets the marker written in afterwards. */
        assert_int_equal(hv_domain_mark(c, uuid, OTHER_INSTALLATION, 9), 0);
        HvDomainInfo marked;
        assert_int_equal(hv_domain_get(c, uuid, &marked), 0);
        assert_string_equal(marked.armada_installation, OTHER_INSTALLATION);
        assert_int_equal(marked.armada_vm_id, 9);
        assert_int_equal(hv_domain_mark(c, uuid, "not-a-uuid", 9), -EINVAL);
        assert_int_equal(hv_domain_undefine(c, uuid), 0);
        HvState st = HV_STATE_RUNNING;
        assert_int_equal(hv_domain_state(c, uuid, &st), -ENOENT);
        assert_int_equal(st, HV_STATE_RUNNING); /* untouched */
        assert_int_equal(hv_domain_get(c, uuid, &one), -ENOENT);
        assert_int_equal(hv_domain_undefine(c, uuid), -ENOENT);

        /* A running domain is powered off on its way out. */
        s.uuid = "a3c8d0e2-2222-4a5b-8c9d-0e1f2a3b4c5d";
        s.name = "life02";
        assert_int_equal(hv_domain_define(c, &s), 0);
        assert_int_equal(hv_domain_start(c, s.uuid), 0);
        assert_int_equal(hv_domain_undefine(c, s.uuid), 0);
        assert_int_equal(hv_domain_get(c, s.uuid, &one), -ENOENT);

        /* A name libvirt accepts but XML must escape survives the trip. */
        s.uuid = "a3c8d0e2-3333-4a5b-8c9d-0e1f2a3b4c5d";
        s.name = NASTY;
        assert_int_equal(hv_domain_define(c, &s), 0);
        assert_int_equal(hv_domain_get(c, s.uuid, &one), 0);
        assert_string_equal(one.name, NASTY);
        assert_int_equal(hv_domain_undefine(c, s.uuid), 0);

        /* An invalid spec never reaches libvirt. */
        s.vcpus = 0;
        assert_int_equal(hv_domain_define(c, &s), -EINVAL);
        assert_non_null(strstr(hv_last_error(), "virtual CPUs"));

        hv_conn_free(c);
}

static void test_unknown_domain(void **state) {
        HvConn *c = connect_test();
        const char *u = "00000000-0000-4000-8000-000000000000";
        int (*const ops[])(HvConn *, const char *) = {
                hv_domain_start, hv_domain_stop, hv_domain_kill,
                hv_domain_pause, hv_domain_resume, hv_domain_undefine,
        };
        for (size_t i = 0; i < ELEMENTSOF(ops); i++) {
                hv_domain_xml_parse("", &(HvDomainInfo) {0}); /* leave a stale error */
                assert_int_equal(ops[i](c, u), -ENOENT);
                assert_non_null(strstr(hv_last_error(), u));
                assert_int_equal(ops[i](c, "nope"), -EINVAL);
                assert_int_equal(ops[i](c, NULL), -EINVAL);
        }
        HvState st;
        HvDomainInfo info;
        assert_int_equal(hv_domain_state(c, u, &st), -ENOENT);
        assert_int_equal(hv_domain_get(c, u, &info), -ENOENT);
        assert_true(strlen(hv_last_error()) > 0);
        hv_conn_free(c);
}

static void test_list_hundreds(void **state) {
        enum { N = 300 };
        HvConn *c = connect_test();
        char uuids[N][37];
        for (int i = 0; i < N; i++) {
                char name[32];
                snprintf(name, sizeof name, "bulk%03d", i);
                uuid_generate(uuids[i]);
                HvDomainSpec s = typical_spec();
                s.name = name;
                s.uuid = uuids[i];
                s.domain_type = "test";
                s.vcpus = 1 + (unsigned) i % 4;
                assert_int_equal(hv_domain_define(c, &s), 0);
                if (i % 3 == 0)
                        assert_int_equal(hv_domain_start(c, uuids[i]), 0);
        }
        HvDomainInfo *list = NULL;
        size_t n = 0;
        assert_int_equal(hv_list_domains(c, &list, &n), 0);
        assert_int_equal(n, N + 1);
        for (int i = 0; i < N; i++) {
                const HvDomainInfo *d = find_domain(list, n, uuids[i]);
                assert_non_null(d);
                assert_int_equal(d->vcpus, 1 + i % 4);
                assert_int_equal(d->state, i % 3 == 0 ? HV_STATE_RUNNING : HV_STATE_SHUTOFF);
                assert_int_equal(d->n_disks, 2);
        }
        free(list);
        for (int i = 0; i < N; i++)
                assert_int_equal(hv_domain_undefine(c, uuids[i]), 0);
        assert_int_equal(hv_list_domains(c, &list, &n), 0);
        assert_int_equal(n, 1);
        free(list);
        hv_conn_free(c);
}

/* Threads share one connection; each sees its own hv_last_error(). */
typedef struct {
        HvConn *c;
        int id;
        int failures;
} Worker;

static void *worker(void *arg) {
        Worker *w = arg;
        char uuid[37], name[32];
        uuid_generate(uuid);
        snprintf(name, sizeof name, "thread%d", w->id);
        HvDomainSpec s = typical_spec();
        s.name = name;
        s.uuid = uuid;
        s.domain_type = "test";
        for (int round = 0; round < 20; round++) {
                if (hv_domain_define(w->c, &s) < 0 || hv_domain_start(w->c, uuid) < 0 ||
                    hv_domain_kill(w->c, uuid) < 0 || hv_domain_undefine(w->c, uuid) < 0)
                        w->failures++;
                if (hv_domain_start(w->c, uuid) != -ENOENT || !strstr(hv_last_error(), uuid))
                        w->failures++;
        }
        return NULL;
}

static void test_threads(void **state) {
        HvConn *c = connect_test();
        Worker w[6];
        pthread_t t[6];
        for (int i = 0; i < 6; i++) {
                w[i] = (Worker) { .c = c, .id = i };
                assert_int_equal(pthread_create(&t[i], NULL, worker, &w[i]), 0);
        }
        for (int i = 0; i < 6; i++) {
                pthread_join(t[i], NULL);
                assert_int_equal(w[i].failures, 0);
        }
        hv_conn_free(c);
}

/* hv_run_bounded: a body that returns in time hands its error to the
 * caller; one that does not is walked away from at the deadline, and its
 * data is dropped by its own thread once it returns, never before. */
typedef struct {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool release, ran, dropped;
} Gate;

static void gate_run(void *data) {
        Gate *g = data;
        pthread_mutex_lock(&g->lock);
        while (!g->release)
                pthread_cond_wait(&g->cond, &g->lock);
        g->ran = true;
        pthread_mutex_unlock(&g->lock);
        hv_set_error("the body says %d", 42);
}

static void gate_drop(void *data) {
        Gate *g = data;
        pthread_mutex_lock(&g->lock);
        assert_true(g->ran);
        g->dropped = true;
        pthread_cond_broadcast(&g->cond);
        pthread_mutex_unlock(&g->lock);
}

static void test_bounded_calls(void **state) {
        static Gate g = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false, false };
        /* In time: the error crosses threads, the caller keeps its data. */
        g.release = true;
        hv_set_error("stale");
        assert_int_equal(hv_run_bounded(10000, gate_run, gate_drop, &g), 0);
        assert_true(g.ran);
        assert_false(g.dropped);
        assert_string_equal(hv_last_error(), "the body says 42");

        /* Not in time: -ETIMEDOUT at the deadline, dropped after it returns. */
        g.release = g.ran = false;
        hv_set_error("mine");
        assert_int_equal(hv_run_bounded(100, gate_run, gate_drop, &g), -ETIMEDOUT);
        assert_string_equal(hv_last_error(), "mine");
        pthread_mutex_lock(&g.lock);
        assert_false(g.ran);
        assert_false(g.dropped);
        g.release = true;
        pthread_cond_broadcast(&g.cond);
        while (!g.dropped)
                pthread_cond_wait(&g.cond, &g.lock);
        assert_true(g.ran);
        pthread_mutex_unlock(&g.lock);
}


/* ---- hv-backup: the pure XML ---- */

static const char BACKUP_DOMAIN[] =
        "<domain type='kvm'><name>web01</name><uuid>6b0c1c36-7a3e-4f3b-9a4c-0a1b2c3d4e5f</uuid>"
        "<metadata><armada:vm xmlns:armada='https://armada.example/xmlns/vm/1'>x</armada:vm></metadata>"
        "<devices>"
        "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/var/lib/a/web01.qcow2'/>"
        "<target dev='vda' bus='virtio'/></disk>"
        "<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/var/lib/a/data.raw'/>"
        "<target dev='vdb' bus='virtio'/></disk>"
        "<disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='/isos/seed.iso'/>"
        "<target dev='sda' bus='sata'/></disk>"
        "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/var/lib/a/logs &amp; more.qcow2'/>"
        "<target dev='vdc' bus='virtio'/></disk>"
        "<interface type='network'><mac address='52:54:00:aa:bb:cc'/><source network='default'/></interface>"
        "</devices></domain>";

static void test_backup_disks(void **state) {
        (void) state;
        HvBackupDisk d[HV_BACKUP_MAX_DISKS];
        size_t n = 99;
        assert_int_equal(hv_backup_disks(BACKUP_DOMAIN, d, &n), 0);
        /* Only qcow2 file disks: the raw disk and the CD-ROM cannot carry a bitmap. */
        assert_int_equal(n, 2);
        assert_string_equal(d[0].target, "vda");
        assert_string_equal(d[0].source, "/var/lib/a/web01.qcow2");
        assert_string_equal(d[1].target, "vdc");
        assert_string_equal(d[1].source, "/var/lib/a/logs & more.qcow2");
        assert_int_equal(hv_backup_disks("<domain", d, &n), -EINVAL);
        assert_int_equal(hv_backup_disks("<domain><devices/></domain>", d, &n), 0);
        assert_int_equal(n, 0);
}

static void test_backup_xml(void **state) {
        (void) state;
        HvBackupDisk d[HV_BACKUP_MAX_DISKS];
        size_t n;
        assert_int_equal(hv_backup_disks(BACKUP_DOMAIN, d, &n), 0);
        HvBackupSpec full = { .checkpoint = "armada-20261201T000000Z", .nbd_addr = "10.0.0.2", .nbd_port = 10900,
                              .export_token = "abc123" };
        _cleanup_free_ char *x = hv_backup_xml_build(&full, d, n);
        assert_non_null(strstr(x, "<domainbackup mode=\"pull\">"));
        assert_null(strstr(x, "<incremental>"));
        assert_non_null(strstr(x, "<server transport=\"tcp\" name=\"10.0.0.2\" port=\"10900\"/>"));
        assert_non_null(strstr(x, "exportname=\"abc123-vda\""));
        assert_null(strstr(x, "exportbitmap"));
        assert_non_null(strstr(x, "<scratch file=\"/var/lib/a/.armada-scratch-abc123-vda.qcow2\"/>"));
        assert_string_equal(d[1].export_name, "abc123-vdc");
        assert_string_equal(d[1].bitmap, "");
        unsigned port = 0;
        assert_int_equal(hv_backup_xml_port(x, &port), 0);
        assert_int_equal(port, 10900);

        HvBackupSpec inc = full;
        inc.incremental = "armada-20261130T000000Z";
        _cleanup_free_ char *y = hv_backup_xml_build(&inc, d, n);
        assert_non_null(strstr(y, "<incremental>armada-20261130T000000Z</incremental>"));
        assert_non_null(strstr(y, "exportbitmap=\"abc123-vda-dirty\""));
        assert_string_equal(d[0].bitmap, "abc123-vda-dirty");
        assert_null(strstr(y, "tls="));

        /* armadad --backup-tls: the NBD server is asked for TLS only. */
        HvBackupSpec tls = inc;
        tls.tls = true;
        _cleanup_free_ char *t = hv_backup_xml_build(&tls, d, n);
        assert_non_null(strstr(t, "<server transport=\"tcp\" name=\"10.0.0.2\" tls=\"yes\" port=\"10900\"/>"));
        assert_int_equal(hv_backup_xml_port(t, &port), 0);
        assert_int_equal(port, 10900);

        _cleanup_free_ char *cp = hv_checkpoint_xml_build("armada-x<y", d, n);
        assert_non_null(strstr(cp, "<name>armada-x&lt;y</name>"));
        assert_non_null(strstr(cp, "<disk name=\"vdc\" checkpoint=\"bitmap\"/>"));
        assert_int_equal(hv_backup_xml_port("<domainbackup><server transport='unix' socket='/s'/></domainbackup>", &port), 0);
        assert_int_equal(port, 0);
}

static void test_restore_xml(void **state) {
        (void) state;
        const char *targets[] = { "vda", "vdc" }, *paths[] = { "/pool/new-vda.qcow2", "/pool/new-vdc.qcow2" };
        _cleanup_free_ char *x = NULL;
        assert_int_equal(hv_restore_xml(BACKUP_DOMAIN, "web01-copy", "11111111-2222-4333-8444-555555555555", targets, paths, 2, &x), 0);
        HvDomainInfo info;
        assert_int_equal(hv_domain_xml_parse(x, &info), 0);
        assert_string_equal(info.name, "web01-copy");
        assert_string_equal(info.uuid, "11111111-2222-4333-8444-555555555555");
        /* vda and vdc moved to the new volumes; the raw vdb (not in the
         * point) is gone rather than shared with the original; the CD-ROM stays. */
        assert_non_null(strstr(x, "/pool/new-vda.qcow2"));
        assert_non_null(strstr(x, "/pool/new-vdc.qcow2"));
        assert_null(strstr(x, "/var/lib/a/"));
        assert_non_null(strstr(x, "/isos/seed.iso"));
        assert_null(strstr(x, "52:54:00:aa:bb:cc"));
        assert_null(strstr(x, "<metadata"));
        assert_string_equal(info.armada_installation, "");
        assert_int_equal(hv_restore_xml("<network/>", "a", "11111111-2222-4333-8444-555555555555", targets, paths, 0, &x), -EINVAL);
}

/* ---- snapshots ---- */

static void test_snapshot_xml_build(void **state) {
        HvDomainSpec s = typical_spec();
        _cleanup_free_ char *xml = hv_snapshot_xml_build("before-upgrade", NASTY, true, s.disks, s.n_disks);
        assert_non_null(xml);
        /* Well-formed, the description comes back byte for byte, the CD-ROM is left out. */
        HvSnapshot p;
        assert_int_equal(hv_snapshot_xml_parse(xml, &p), 0);
        assert_string_equal(p.name, "before-upgrade");
        assert_string_equal(p.description, NASTY);
        assert_non_null(strstr(xml, "<memory snapshot=\"internal\"/>"));
        assert_non_null(strstr(xml, "<disk name=\"vda\" snapshot=\"internal\"/>"));
        assert_non_null(strstr(xml, "<disk name=\"sda\" snapshot=\"no\"/>"));
        assert_null(strstr(xml, "<b>"));
        _cleanup_free_ char *cold = hv_snapshot_xml_build("cold", NULL, false, s.disks, s.n_disks);
        assert_non_null(strstr(cold, "<memory snapshot=\"no\"/>"));
        assert_null(strstr(cold, "<description"));
        /* A raw writable disk cannot hold an internal snapshot: named. */
        s.disks[0] = disk("/pool/raw.img", "raw", "vdb", false);
        assert_null(hv_snapshot_xml_build("x", NULL, false, s.disks, s.n_disks));
        assert_non_null(strstr(hv_last_error(), "'vdb'"));
        assert_null(hv_snapshot_xml_build("", NULL, false, NULL, 0));
        char longname[HV_SNAPSHOT_NAME_MAX + 2];
        memset(longname, 'a', sizeof longname - 1);
        longname[sizeof longname - 1] = 0;
        assert_null(hv_snapshot_xml_build(longname, NULL, false, NULL, 0));
}

static void test_snapshot_xml_parse(void **state) {
        HvSnapshot p;
        const char *live = "<domainsnapshot><name>s2</name><state>running</state><parent><name>s1</name></parent>"
                           "<creationTime>1764547200</creationTime><memory snapshot='internal'/><domain><name>x</name></domain>"
                           "</domainsnapshot>";
        assert_int_equal(hv_snapshot_xml_parse(live, &p), 0);
        assert_string_equal(p.name, "s2");
        assert_string_equal(p.parent, "s1");
        assert_int_equal(p.created, 1764547200);
        assert_true(p.has_memory);
        const char *cold = "<domainsnapshot><name>s1</name><state>shutoff</state><memory snapshot='no'/></domainsnapshot>";
        assert_int_equal(hv_snapshot_xml_parse(cold, &p), 0);
        assert_string_equal(p.parent, "");
        assert_false(p.has_memory);
        assert_int_equal(hv_snapshot_xml_parse("<domainsnapshot><state>running</state></domainsnapshot>", &p), -EINVAL);
        assert_int_equal(hv_snapshot_xml_parse("<domain><name>x</name></domain>", &p), -EINVAL);
        assert_int_equal(hv_snapshot_xml_parse("<!DOCTYPE d [<!ENTITY e 'x'>]><domainsnapshot><name>&e;</name></domainsnapshot>", &p),
                         -EINVAL);
        assert_int_equal(hv_snapshot_xml_parse("<domainsnapshot><name>", &p), -EINVAL);
}

/* The whole cycle on the test driver, which keeps snapshots as metadata. */
static void test_snapshot_cycle(void **state) {
        HvConn *c = connect_test();
        const char *uuid = "a3c8d0e2-2222-4a5b-8c9d-0e1f2a3b4c5d";
        HvDomainSpec s = typical_spec();
        s.name = "snap01";
        s.uuid = uuid;
        s.domain_type = "test";
        assert_int_equal(hv_domain_define(c, &s), 0);
        _cleanup_free_ char *x1 = hv_snapshot_xml_build("one", "first", false, s.disks, s.n_disks);
        assert_int_equal(hv_snapshot_create(c, uuid, x1), 0);
        assert_int_equal(hv_snapshot_create(c, uuid, x1), -EEXIST);
        assert_int_equal(hv_domain_start(c, uuid), 0);
        _cleanup_free_ char *x2 = hv_snapshot_xml_build("two", NULL, true, s.disks, s.n_disks);
        assert_int_equal(hv_snapshot_create(c, uuid, x2), 0);
        _cleanup_free_ HvSnapshot *l = NULL;
        size_t n = 0;
        assert_int_equal(hv_snapshot_list(c, uuid, &l, &n), 0);
        assert_int_equal(n, 2);
        assert_string_equal(l[0].name, "one");
        assert_string_equal(l[0].description, "first");
        assert_false(l[0].has_memory);
        assert_string_equal(l[1].name, "two");
        assert_string_equal(l[1].parent, "one");
        assert_true(l[1].has_memory);
        assert_true(l[1].current);
        HvState st;
        assert_int_equal(hv_snapshot_revert(c, uuid, "one", true), 0);
        assert_int_equal(hv_domain_state(c, uuid, &st), 0);
        assert_int_equal(st, HV_STATE_SHUTOFF);
        assert_int_equal(hv_snapshot_revert(c, uuid, "two", true), 0);
        assert_int_equal(hv_domain_state(c, uuid, &st), 0);
        assert_int_equal(st, HV_STATE_RUNNING);
        assert_int_equal(hv_snapshot_revert(c, uuid, "nope", true), -ENOENT);
        assert_int_equal(hv_snapshot_delete(c, uuid, "nope"), -ENOENT);
        assert_int_equal(hv_snapshot_delete(c, uuid, "one"), 0);
        free(l);
        l = NULL;
        assert_int_equal(hv_snapshot_list(c, uuid, &l, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(l[0].parent, "");
        assert_int_equal(hv_snapshot_list(c, "a3c8d0e2-3333-4a5b-8c9d-0e1f2a3b4c5d", &l, &n) == -ENOENT, true);
        assert_int_equal(hv_domain_kill(c, uuid), 0);
        assert_int_equal(hv_domain_undefine(c, uuid), 0); /* with its snapshots' metadata */
        hv_conn_free(c);
}

/* Setting the metadata aside and giving it back (migration, failover):
 * parents first, the current one current again, secure XML kept. */
static void test_snapshot_metadata_moves(void **state) {
        HvConn *c = connect_test();
        const char *uuid = "a3c8d0e2-4444-4a5b-8c9d-0e1f2a3b4c5d";
        HvDomainSpec s = typical_spec();
        s.name = "snap02";
        s.uuid = uuid;
        s.domain_type = "test";
        assert_int_equal(hv_domain_define(c, &s), 0);
        _cleanup_free_ char *x1 = hv_snapshot_xml_build("base", NULL, false, s.disks, s.n_disks);
        _cleanup_free_ char *x2 = hv_snapshot_xml_build("child", NULL, false, s.disks, s.n_disks);
        _cleanup_free_ char *x3 = hv_snapshot_xml_build("grandchild", NULL, false, s.disks, s.n_disks);
        assert_int_equal(hv_snapshot_create(c, uuid, x1), 0);
        assert_int_equal(hv_snapshot_create(c, uuid, x2), 0);
        assert_int_equal(hv_snapshot_create(c, uuid, x3), 0);
        assert_int_equal(hv_snapshot_revert(c, uuid, "child", true), 0); /* current: child */
        HvSnapshotDef *defs = NULL;
        size_t nd = 0;
        assert_int_equal(hv_snapshot_defs(c, uuid, &defs, &nd), 0);
        assert_int_equal(nd, 3);
        assert_string_equal(defs[0].name, "base");
        assert_non_null(strstr(defs[0].xml, "<domainsnapshot"));
        assert_non_null(strstr(defs[0].xml, "<domain")); /* the definition of then, what a revert needs */
        for (size_t i = 0; i < nd; i++)
                assert_int_equal(defs[i].current, streq(defs[i].name, "child"));
        /* The test driver keeps metadata only and knows no METADATA_ONLY
         * flag: a plain delete, children first, stands for
         * hv_snapshot_forget() here (the system test covers that on QEMU). */
        for (size_t i = nd; i > 0; i--)
                assert_int_equal(hv_snapshot_delete(c, uuid, defs[i - 1].name), 0);
        _cleanup_free_ HvSnapshot *l = NULL;
        size_t n = 9;
        assert_int_equal(hv_snapshot_list(c, uuid, &l, &n), 0);
        assert_int_equal(n, 0);
        free(steal_ptr(l));
        assert_int_equal(hv_snapshot_put_back(c, uuid, defs, nd), 0);
        assert_int_equal(hv_snapshot_list(c, uuid, &l, &n), 0);
        assert_int_equal(n, 3);
        for (size_t i = 0; i < n; i++) {
                if (streq(l[i].name, "grandchild"))
                        assert_string_equal(l[i].parent, "child");
                assert_int_equal(l[i].current, streq(l[i].name, "child"));
        }
        /* Given back twice: updated, no error. */
        assert_int_equal(hv_snapshot_put_back(c, uuid, defs, nd), 0);
        /* A child without its parent is refused, saying so. */
        for (size_t i = nd; i > 0; i--)
                assert_int_equal(hv_snapshot_delete(c, uuid, defs[i - 1].name), 0);
        assert_true(hv_snapshot_redefine(c, uuid, defs[2].xml, false) < 0);
        assert_non_null(strstr(hv_last_error(), "redefining a snapshot"));
        /* The test driver has no checkpoints: nothing to drop. */
        size_t gone = 9;
        assert_int_equal(hv_snapshot_checkpoints_drop(c, uuid, &gone), 0);
        assert_int_equal(gone, 0);
        hv_snapshot_defs_free(defs, nd);
        assert_int_equal(hv_domain_undefine(c, uuid), 0);
        hv_conn_free(c);
}

/* ---- hv-hardware (issue 12) ---- */

static void test_hw_disk_xml(void **state) {
        HvDisk d = disk("/pool/a'b\"&<c>.qcow2", "qcow2", "vdb", false);
        _cleanup_free_ char *xml = hv_disk_xml_build(&d);
        assert_non_null(xml);
        /* User text arrives escaped: one attribute, nothing injected. */
        assert_non_null(strstr(xml, "file=\"/pool/a'b&quot;&amp;&lt;c&gt;.qcow2\""));
        assert_non_null(strstr(xml, "<target dev=\"vdb\" bus=\"virtio\"/>"));
        assert_null(strstr(xml, "readonly"));
        HvDisk cd = disk("", "raw", "hdc", true);
        _cleanup_free_ char *cdxml = hv_disk_xml_build(&cd);
        assert_non_null(cdxml);
        assert_null(strstr(cdxml, "<source"));     /* an empty drive */
        assert_non_null(strstr(cdxml, "bus=\"ide\""));
        assert_non_null(strstr(cdxml, "<readonly/>"));
        HvDisk bad = disk("/x", "qcow2", "xvda", false);
        assert_null(hv_disk_xml_build(&bad));
        HvDisk vcd = disk("/x.iso", "raw", "vdc", true);
        assert_null(hv_disk_xml_build(&vcd));
        HvDisk vmdk = disk("/x", "vmdk", "vdb", false);
        assert_null(hv_disk_xml_build(&vmdk));
}

static void test_hw_xml_edit(void **state) {
        HvDomainSpec s = typical_spec();
        _cleanup_free_ char *xml = hv_domain_xml_build(&s);
        assert_non_null(xml);
        const char *order[] = { "cdrom", "network", "hd" };
        HvDisk add = disk("/pool/web01-vdb.qcow2", "qcow2", "vdb", false);
        HvConfigEdit e = { .boot_order = order, .n_boot = 3, .add = &add, .media_target = "sda", .media = "/lib/new&.iso" };
        _cleanup_free_ char *out = hv_domain_xml_edit(xml, &e);
        assert_non_null(out);
        char devs[4][8];
        assert_int_equal(hv_domain_xml_boot_order(out, devs), 3);
        assert_string_equal(devs[0], "cdrom");
        assert_string_equal(devs[1], "network");
        assert_string_equal(devs[2], "hd");
        HvDomainInfo info;
        assert_int_equal(hv_domain_xml_parse(out, &info), 0);
        assert_int_equal(info.n_disks, 3);
        assert_string_equal(info.disks[1].path, "/lib/new&.iso");
        assert_true(info.disks[1].cdrom);
        assert_string_equal(info.disks[2].target, "vdb");
        /* Dropping a disk, emptying the drive. */
        HvConfigEdit e2 = { .drop = "vdb", .media_target = "sda", .media = "" };
        _cleanup_free_ char *out2 = hv_domain_xml_edit(out, &e2);
        assert_non_null(out2);
        assert_int_equal(hv_domain_xml_parse(out2, &info), 0);
        assert_int_equal(info.n_disks, 2);
        assert_string_equal(info.disks[1].path, "");
        /* Refusals: a target twice, an unknown target or device, not a domain. */
        HvDisk twice = disk("/x", "qcow2", "vda", false);
        HvConfigEdit e3 = { .add = &twice };
        assert_null(hv_domain_xml_edit(xml, &e3));
        HvConfigEdit e4 = { .drop = "vdz" };
        assert_null(hv_domain_xml_edit(xml, &e4));
        const char *floppy[] = { "fd" };
        HvConfigEdit e5 = { .boot_order = floppy, .n_boot = 1 };
        assert_null(hv_domain_xml_edit(xml, &e5));
        HvConfigEdit e6 = { .drop = "vda" };
        assert_null(hv_domain_xml_edit("<pool/>", &e6));
        assert_null(hv_domain_xml_edit("<!DOCTYPE domain [<!ENTITY x 'y'>]><domain>&x;</domain>", &e6));
}

static void test_hw_test_driver(void **state) {
        HvConn *c = connect_test();
        const char *uuid = "a3c8d0e2-2222-4a5b-8c9d-0e1f2a3b4c5d";
        HvDomainSpec s = typical_spec();
        s.name = "hw01";
        s.uuid = uuid;
        s.domain_type = "test";
        s.n_disks = 1;
        assert_int_equal(hv_domain_define(c, &s), 0);
        HvHardware hw;
        assert_int_equal(hv_domain_hardware(c, uuid, &hw), 0);
        assert_false(hw.running);
        assert_int_equal(hw.vcpus, 2);
        assert_int_equal(hw.memory_mib, 2048);
        /* Shut off: everything for the next boot, maxima raised as needed. */
        HvHardwareChange chg = { .vcpus = 3, .memory_mib = 3072 };
        HvHardwareApplied ap;
        assert_int_equal(hv_domain_hardware_set(c, uuid, &chg, &ap), 0);
        assert_int_equal(ap.vcpus, HV_APPLIED_NEXT_BOOT);
        assert_int_equal(ap.memory, HV_APPLIED_NEXT_BOOT);
        assert_int_equal(ap.max_vcpus, HV_APPLIED_NONE);
        assert_int_equal(hv_domain_hardware(c, uuid, &hw), 0);
        assert_int_equal(hw.config_vcpus, 3);
        assert_int_equal(hw.config_max_vcpus, 3);
        assert_int_equal(hw.config_memory_mib, 3072);
        assert_true(hw.config_max_memory_mib >= 3072);
        /* A drive is added for a CD, then emptied; a boot order. */
        HvApplied a;
        char target[16];
        assert_int_equal(hv_domain_cd_set(c, uuid, "/lib/x.iso", &a, target), 0);
        assert_int_equal(a, HV_APPLIED_NEXT_BOOT);
        assert_string_equal(target, "hdc");
        HvDomainInfo info;
        assert_int_equal(hv_domain_get(c, uuid, &info), 0);
        assert_int_equal(info.n_disks, 2);
        assert_string_equal(info.disks[1].path, "/lib/x.iso");
        assert_int_equal(hv_domain_cd_set(c, uuid, NULL, &a, target), 0);
        assert_int_equal(hv_domain_get(c, uuid, &info), 0);
        assert_string_equal(info.disks[1].path, "");
        const char *order[] = { "cdrom", "hd" };
        assert_int_equal(hv_domain_boot_order(c, uuid, order, 2), 0);
        assert_int_equal(hv_domain_hardware(c, uuid, &hw), 0);
        assert_int_equal(hw.n_boot, 2);
        assert_string_equal(hw.boot[0], "cdrom");
        /* Disks through the definition; a missing one is -ENOENT. */
        HvDisk d = disk("/pool/hw01-vdb.qcow2", "qcow2", "vdb", false);
        assert_int_equal(hv_domain_disk_attach(c, uuid, &d, &a), 0);
        assert_int_equal(a, HV_APPLIED_NEXT_BOOT);
        assert_int_equal(hv_domain_disk_detach(c, uuid, "vdb", &a), 0);
        assert_int_equal(hv_domain_disk_detach(c, uuid, "vdb", &a), -ENOENT);
        assert_int_equal(hv_domain_hardware(c, "a3c8d0e2-3333-4a5b-8c9d-0e1f2a3b4c5d", &hw), -ENOENT);
        assert_int_equal(hv_domain_undefine(c, uuid), 0);
        hv_conn_free(c);
}

/* ---- networks and pools (hv-network.c, hv-pool.c) ---- */

static void expect_net_refused(HvNetworkSpec spec, const char *field) {
        const char *f = NULL;
        char why[256];
        assert_int_equal(hv_network_spec_check(&spec, &f, why, sizeof why), -EINVAL);
        assert_string_equal(f, field);
        assert_true(strlen(why) > 10);
        assert_null(hv_network_xml_build(&spec, HV_BRIDGE_LINUX));
}

static void test_network_spec_check(void **state) {
        expect_net_refused((HvNetworkSpec) { .name = "bad name", .mode = "nat" }, "name");
        expect_net_refused((HvNetworkSpec) { .name = "n", .mode = "route" }, "mode");
        expect_net_refused((HvNetworkSpec) { .name = "n", .mode = "bridge" }, "bridge");
        expect_net_refused((HvNetworkSpec) { .name = "n", .mode = "nat", .bridge = "br0" }, "bridge");
        expect_net_refused((HvNetworkSpec) { .name = "n", .mode = "bridge", .bridge = "br0'/><x" }, "bridge");
        expect_net_refused((HvNetworkSpec) { .name = "n", .mode = "bridge", .bridge = "averyveryverylongbridge" }, "bridge");
        expect_net_refused((HvNetworkSpec) { .name = "n", .mode = "bridge", .bridge = "br0", .vlan = 4095 }, "vlan");
        expect_net_refused((HvNetworkSpec) { .name = "n", .mode = "isolated", .vlan = 10 }, "vlan");
        expect_net_refused((HvNetworkSpec) { .name = "n", .mode = "nat", .subnet = "10.1.2.1/24" }, "subnet");
        expect_net_refused((HvNetworkSpec) { .name = "n", .mode = "nat", .subnet = "10.1.2.0/31" }, "subnet");
        expect_net_refused((HvNetworkSpec) { .name = "n", .mode = "nat", .subnet = "10.1.2.0" }, "subnet");
        expect_net_refused((HvNetworkSpec) { .name = "n", .mode = "nat", .subnet = "10.1.2.0/2x" }, "subnet");
        expect_net_refused((HvNetworkSpec) { .name = "n", .mode = "bridge", .bridge = "br0", .subnet = "10.1.2.0/24" }, "subnet");
        const char *f;
        char why[128];
        assert_int_equal(hv_network_spec_check(&(HvNetworkSpec) { .name = "lan", .mode = "nat", .subnet = "192.168.64.0/18" }, &f, why,
                                               sizeof why), 0);
        assert_int_equal(hv_network_spec_check(&(HvNetworkSpec) { .name = "b", .mode = "bridge", .bridge = "br0.10", .vlan = 4094 }, &f,
                                               why, sizeof why), 0);
}

static void test_network_xml(void **state) {
        _cleanup_free_ char *nat = hv_network_xml_build(&(HvNetworkSpec) { .name = "lan", .mode = "nat", .subnet = "10.1.2.0/24" },
                                                         HV_BRIDGE_LINUX);
        assert_non_null(nat);
        assert_non_null(strstr(nat, "<forward mode=\"nat\"/>"));
        assert_non_null(strstr(nat, "<ip address=\"10.1.2.1\" netmask=\"255.255.255.0\">"));
        assert_non_null(strstr(nat, "<range start=\"10.1.2.2\" end=\"10.1.2.254\"/>"));
        _cleanup_free_ char *iso = hv_network_xml_build(&(HvNetworkSpec) { .name = "iso", .mode = "isolated" }, HV_BRIDGE_LINUX);
        assert_null(strstr(iso, "<forward"));
        assert_null(strstr(iso, "<ip"));
        _cleanup_free_ char *lb = hv_network_xml_build(&(HvNetworkSpec) { .name = "b", .mode = "bridge", .bridge = "br0" }, HV_BRIDGE_LINUX);
        assert_non_null(strstr(lb, "<forward mode=\"bridge\"/>"));
        assert_non_null(strstr(lb, "<bridge name=\"br0\"/>"));
        assert_null(strstr(lb, "virtualport"));
        _cleanup_free_ char *ovs = hv_network_xml_build(&(HvNetworkSpec) { .name = "b", .mode = "bridge", .bridge = "ovsbr", .vlan = 42 },
                                                         HV_BRIDGE_OVS);
        assert_non_null(strstr(ovs, "<virtualport type=\"openvswitch\"/>"));
        assert_non_null(strstr(ovs, "<tag id=\"42\"/>"));
        assert_string_equal(hv_bridge_kind_name(HV_BRIDGE_OVS), "openvswitch");
        assert_string_equal(hv_bridge_kind_name(HV_BRIDGE_LINUX), "linux-bridge");
}

static void test_mac_and_nic_xml(void **state) {
        char m[18];
        assert_true(hv_mac_normalize("52:54:00:AB:cd:0F", m));
        assert_string_equal(m, "52:54:00:ab:cd:0f");
        assert_false(hv_mac_normalize("01:00:5e:00:00:01", m));   /* multicast */
        assert_false(hv_mac_normalize("00:00:00:00:00:00", m));
        assert_false(hv_mac_normalize("52-54-00-ab-cd-0f", m));
        assert_false(hv_mac_normalize("52:54:00:ab:cd", m));
        assert_false(hv_mac_normalize(NULL, m));
        char r1[18], r2[18];
        hv_mac_random(r1);
        hv_mac_random(r2);
        assert_true(hv_mac_normalize(r1, m));
        assert_memory_equal(r1, "52:54:00:", 9);
        assert_string_not_equal(r1, r2);
        _cleanup_free_ char *x = hv_nic_xml_build("lan", "52:54:00:AA:00:01", "e1000");
        assert_non_null(strstr(x, "<mac address=\"52:54:00:aa:00:01\"/>"));
        assert_non_null(strstr(x, "<source network=\"lan\"/>"));
        assert_non_null(strstr(x, "<model type=\"e1000\"/>"));
        assert_null(hv_nic_xml_build("lan\"/><x", "52:54:00:aa:00:01", "virtio"));
        assert_null(hv_nic_xml_build("lan", "52:54:00:aa:00:01", "ne2k"));
}

static void expect_pool_refused(HvPoolSpec spec, const char *field) {
        const char *f = NULL;
        char why[256];
        assert_int_equal(hv_pool_spec_check(&spec, &f, why, sizeof why), -EINVAL);
        assert_string_equal(f, field);
        assert_null(hv_pool_xml_build(&spec));
}

static void test_pool_spec_and_xml(void **state) {
        expect_pool_refused((HvPoolSpec) { .name = "p", .type = "zfs" }, "type");
        expect_pool_refused((HvPoolSpec) { .name = "p", .type = "dir" }, "path");
        expect_pool_refused((HvPoolSpec) { .name = "p", .type = "dir", .path = "rel" }, "path");
        expect_pool_refused((HvPoolSpec) { .name = "p", .type = "dir", .path = "/srv/../etc" }, "path");
        expect_pool_refused((HvPoolSpec) { .name = "p", .type = "dir", .path = "/srv/a\"b" }, "path");
        expect_pool_refused((HvPoolSpec) { .name = "p", .type = "dir", .path = "/srv/a", .source_host = "nas" }, "source_host");
        expect_pool_refused((HvPoolSpec) { .name = "p", .type = "netfs", .path = "/srv/a", .source_path = "/e" }, "source_host");
        expect_pool_refused((HvPoolSpec) { .name = "p", .type = "netfs", .path = "/srv/a", .source_host = "-o", .source_path = "/e" },
                            "source_host");
        expect_pool_refused((HvPoolSpec) { .name = "p", .type = "netfs", .path = "/srv/a", .source_host = "nas" }, "source_path");
        expect_pool_refused((HvPoolSpec) { .name = "p", .type = "iscsi", .source_host = "san" }, "source_name");
        expect_pool_refused((HvPoolSpec) { .name = "p", .type = "logical", .source_name = "vg0", .path = "/srv/x" }, "path");
        expect_pool_refused((HvPoolSpec) { .name = "p", .type = "logical", .source_name = "vg0;rm" }, "source_name");
        _cleanup_free_ char *nfs = hv_pool_xml_build(&(HvPoolSpec) { .name = "nfs1", .type = "netfs", .path = "/srv/nfs1",
                                                                     .source_host = "nas.example", .source_path = "/export/vms" });
        assert_non_null(strstr(nfs, "<pool type=\"netfs\">"));
        assert_non_null(strstr(nfs, "<host name=\"nas.example\"/>"));
        assert_non_null(strstr(nfs, "<dir path=\"/export/vms\"/>"));
        assert_non_null(strstr(nfs, "<format type=\"nfs\"/>"));
        assert_non_null(strstr(nfs, "<path>/srv/nfs1</path>"));
        _cleanup_free_ char *lvm = hv_pool_xml_build(&(HvPoolSpec) { .name = "vg", .type = "logical", .source_name = "vg0" });
        assert_non_null(strstr(lvm, "<name>vg0</name>"));
        assert_non_null(strstr(lvm, "<path>/dev/vg0</path>"));
        _cleanup_free_ char *iscsi = hv_pool_xml_build(&(HvPoolSpec) { .name = "san", .type = "iscsi", .source_host = "10.0.0.9",
                                                                       .source_name = "iqn.2003-01.org.example:disk1" });
        assert_non_null(strstr(iscsi, "<device path=\"iqn.2003-01.org.example:disk1\"/>"));
}

/* Against libvirt's test driver: a network defined, listed, refused twice
 * (as "exists", started), removed; a dir pool likewise. */
static void test_network_and_pool_on_test_driver(void **state) {
        HvConn *c = connect_test();
        HvNetworkSpec spec = { .name = "armada-ut-net", .mode = "nat", .subnet = "10.99.1.0/24" };
        bool created = false;
        assert_int_equal(hv_network_ensure(c, &spec, &created, NULL), 0);
        assert_true(created);
        assert_int_equal(hv_network_ensure(c, &spec, &created, NULL), 0);
        assert_false(created);
        HvNetworkInfo *nets = NULL;
        size_t n = 0;
        assert_int_equal(hv_network_list(c, &nets, &n), 0);
        bool found = false;
        for (size_t i = 0; i < n; i++)
                if (streq(nets[i].name, "armada-ut-net")) {
                        found = true;
                        assert_true(nets[i].active);
                        assert_true(nets[i].autostart);
                        assert_string_equal(nets[i].forward, "nat");
                }
        free(nets);
        assert_true(found);
        assert_int_equal(hv_network_remove(c, "armada-ut-net"), 0);
        assert_int_equal(hv_network_remove(c, "armada-ut-net"), -ENOENT);

        char tmpl[] = "/tmp/armada-ut-pool-XXXXXX";
        assert_non_null(mkdtemp(tmpl));
        HvPoolSpec ps = { .name = "armada-ut-pool", .type = "dir", .path = tmpl };
        assert_int_equal(hv_pool_add(c, &ps), 0);
        assert_int_equal(hv_pool_add(c, &ps), -EEXIST);
        HvPoolInfo *pools = NULL;
        assert_int_equal(hv_pool_list(c, &pools, &n), 0);
        found = false;
        for (size_t i = 0; i < n; i++)
                if (streq(pools[i].name, "armada-ut-pool")) {
                        found = true;
                        assert_true(pools[i].active);
                        assert_string_equal(pools[i].type, "dir");
                        assert_true(pools[i].capacity > 0);
                }
        free(pools);
        assert_true(found);
        HvVolumeInfo *vols = NULL;
        assert_int_equal(hv_pool_volumes(c, "armada-ut-pool", &vols, &n), 0);
        free(vols);
        assert_int_equal(hv_pool_volumes(c, "nosuchpool", &vols, &n), -ENOENT);
        assert_int_equal(hv_pool_volume_delete(c, "armada-ut-pool", "nosuch"), -ENOENT);
        assert_int_equal(hv_pool_remove(c, "armada-ut-pool"), 0);
        assert_int_equal(hv_pool_remove(c, "armada-ut-pool"), -ENOENT);
        rmdir(tmpl);
        hv_conn_free(c);
}

/* ---- shutdown abandons calls that wait on a daemon ---- */

typedef struct {
        int fd;           /* read end: the call "returns" when it can read */
        atomic_int *started;
        atomic_int *dropped;
} Hang;

static void hang_run(void *data) {
        Hang *h = data;
        atomic_fetch_add(h->started, 1);
        char c;
        while (read(h->fd, &c, 1) < 0 && errno == EINTR)
                ;
}

static void hang_drop(void *data) {
        Hang *h = data;
        atomic_fetch_add(h->dropped, 1);
        free(h);
}

typedef struct {
        Hang *h;
        int r;
} Waiter;

static void *waiter_main(void *arg) {
        Waiter *w = arg;
        w->r = hv_run_bounded(120000, hang_run, hang_drop, w->h);
        return NULL;
}

/* In a child: hv_abandon_calls() is for good, and the other tests connect. */
static int abandon_child(void) {
        int p[2];
        if (pipe(p) < 0)
                return 10;
        static atomic_int started, dropped;
        Waiter w = { .h = xcalloc(1, sizeof(Hang)) };
        *w.h = (Hang) { .fd = p[0], .started = &started, .dropped = &dropped };
        pthread_t t;
        if (pthread_create(&t, NULL, waiter_main, &w) != 0)
                return 11;
        while (atomic_load(&started) == 0)
                usleep(1000);
        hv_abandon_calls();
        pthread_join(t, NULL); /* without the wake-up: 120 s, then -ETIMEDOUT */
        if (w.r != -ECANCELED)
                return 12;
        /* Later calls give up at once, their data still dropped. */
        Hang *h2 = xcalloc(1, sizeof *h2);
        *h2 = (Hang) { .fd = p[0], .started = &started, .dropped = &dropped };
        if (hv_run_bounded(120000, hang_run, hang_drop, h2) != -ECANCELED)
                return 13;
        /* Both calls return late; each hands its data to drop. */
        if (write(p[1], "xx", 2) != 2)
                return 14;
        while (atomic_load(&dropped) < 2)
                usleep(1000);
        return 0;
}

static void test_abandon_calls(void **state) {
        (void) state;
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
                _exit(abandon_child());
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_xml_uefi),
                cmocka_unit_test(test_snapshot_xml_build),
                cmocka_unit_test(test_snapshot_xml_parse),
                cmocka_unit_test(test_snapshot_cycle),
                cmocka_unit_test(test_snapshot_metadata_moves),
                cmocka_unit_test(test_xml_armada_marker),
                cmocka_unit_test(test_clone_xml),
                cmocka_unit_test(test_uri_normalize),
                cmocka_unit_test(test_state_names),
                cmocka_unit_test(test_network_spec_check),
                cmocka_unit_test(test_network_xml),
                cmocka_unit_test(test_mac_and_nic_xml),
                cmocka_unit_test(test_pool_spec_and_xml),
                cmocka_unit_test(test_network_and_pool_on_test_driver),
                cmocka_unit_test(test_build_golden_typical),
                cmocka_unit_test(test_build_golden_minimal),
                cmocka_unit_test(test_build_escapes_round_trip),
                cmocka_unit_test(test_build_invalid),
                cmocka_unit_test(test_build_more_nics),
                cmocka_unit_test(test_parse_libvirt_xml),
                cmocka_unit_test(test_parse_rejects),
                cmocka_unit_test(test_connect_and_host_info),
                cmocka_unit_test(test_uri_check),
                cmocka_unit_test(test_connect_error_does_not_quote_the_file),
                cmocka_unit_test(test_pools_and_volumes),
                cmocka_unit_test(test_volume_delete_needs_a_pool),
                cmocka_unit_test(test_domain_lifecycle),
                cmocka_unit_test(test_unknown_domain),
                cmocka_unit_test(test_list_hundreds),
                cmocka_unit_test(test_threads),
                cmocka_unit_test(test_bounded_calls),
                cmocka_unit_test(test_backup_disks),
                cmocka_unit_test(test_backup_xml),
                cmocka_unit_test(test_restore_xml),
                cmocka_unit_test(test_hw_disk_xml),
                cmocka_unit_test(test_hw_xml_edit),
                cmocka_unit_test(test_hw_test_driver),
                cmocka_unit_test(test_abandon_calls),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
