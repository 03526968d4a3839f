!! A model as the file formats see it: precision, its inputs (per-sample shapes and names), the
!! layers in file order with their tensors and the values each takes, its outputs, and
!! metadata. The readers add inputs with `add_input` and one layer at a time with `add_layer`,
!! which resolves the layer's inputs, infers shapes, creates, configures and validates it; the
!! writers walk it back.
!!
!! Values are numbered: 1..n_graph_inputs() are the inputs, n_graph_inputs() + i is the output
!! of layer i. A layer can only take values defined before it, so file order is an execution
!! order and a graph read from a file has no cycle by construction.
module fkb_model
  use iso_fortran_env, only: int64
  use fkb_errors, only: FKB_OK, FKB_ERR_FORMAT, FKB_ERR_UNSUPPORTED, set_error
  use fkb_config, only: fkb_config_t, percent_encode, percent_decode, int_text
  use fkb_tensor, only: FKB_FLOAT32, dtype_name
  use fkb_layer, only: fkb_layer_t, shape_t
  use fkb_layer_registry, only: new_layer
  use fkb_blas, only: BLAS_INT_MAX
  use fkb_text, only: string_t, split_fields
  use fkb_optimizer, only: slot_t
  implicit none
  private
  public :: fkb_model_t, layer_box, meta_item, train_record_t

  type :: layer_box
    class(fkb_layer_t), allocatable :: l
    integer, allocatable :: src(:)   !! value ids of the layer's inputs, in order
  end type layer_box

  type :: meta_item
    character(len=:), allocatable :: key, value
  end type meta_item

  type :: train_record_t
    !! Training state as a file holds it: the compiled optimizer and loss specs, the step
    !! count and counters, and the optimizer's slot arrays (double precision, in order).
    character(len=:), allocatable :: optimizer, loss, state
    type(string_t), allocatable :: slot_names(:)
    type(slot_t), allocatable :: slots(:)
  end type train_record_t

  type :: fkb_model_t
    integer :: dtype = FKB_FLOAT32
    integer(int64) :: n_in = 0                  !! flat size of the first input
    type(shape_t), allocatable :: in_shapes(:)  !! per-sample shape of each input
    type(string_t), allocatable :: in_names(:)
    integer, allocatable :: outputs(:)          !! value ids; unallocated: the last layer's
    integer :: n_layers = 0
    type(layer_box), allocatable :: layers(:)
    type(meta_item), allocatable :: meta(:)
    type(train_record_t), allocatable :: train   !! read from a file, until the network takes it
  contains
    procedure :: n_out => model_n_out
    procedure :: add_input => model_add_input
    procedure :: add_layer => model_add_layer
    procedure :: set_outputs => model_set_outputs
    procedure :: n_graph_inputs => model_n_graph_inputs
    procedure :: output_values => model_output_values
    procedure :: value_shape => model_value_shape
    procedure :: value_size => model_value_size
    procedure :: value_name => model_value_name
    procedure :: find_value => model_find_value
    procedure :: is_chain => model_is_chain
    procedure :: uses_graph_records => model_uses_graph_records
    procedure :: set_meta => model_set_meta
    procedure :: get_meta => model_get_meta
    procedure :: header => model_header
    procedure :: prepare => model_prepare
    procedure :: release => model_release
  end type fkb_model_t

contains

  integer(int64) function model_n_out(self)
    !! Flat size of the first output (0 if the model has no input yet).
    class(fkb_model_t), intent(in) :: self
    integer, allocatable :: outs(:)
    model_n_out = 0
    if (self%n_graph_inputs() == 0) return
    outs = self%output_values()
    model_n_out = self%value_size(outs(1))
  end function model_n_out

  pure integer function model_n_graph_inputs(self)
    class(fkb_model_t), intent(in) :: self
    model_n_graph_inputs = 0
    if (allocated(self%in_shapes)) model_n_graph_inputs = size(self%in_shapes)
  end function model_n_graph_inputs

  function model_output_values(self) result(v)
    !! The value ids of the outputs, in order.
    class(fkb_model_t), intent(in) :: self
    integer, allocatable :: v(:)
    if (allocated(self%outputs)) then
      v = self%outputs
    else
      v = [self%n_graph_inputs() + self%n_layers]
    end if
  end function model_output_values

  function model_value_shape(self, v) result(shape)
    class(fkb_model_t), intent(in) :: self
    integer, intent(in) :: v
    integer(int64), allocatable :: shape(:)
    integer :: ni
    ni = self%n_graph_inputs()
    if (v <= ni) then
      shape = self%in_shapes(v)%d
    else
      shape = self%layers(v - ni)%l%out_shape
    end if
  end function model_value_shape

  integer(int64) function model_value_size(self, v)
    class(fkb_model_t), intent(in) :: self
    integer, intent(in) :: v
    model_value_size = product(self%value_shape(v))
  end function model_value_size

  function model_value_name(self, v) result(name)
    class(fkb_model_t), intent(in) :: self
    integer, intent(in) :: v
    character(len=:), allocatable :: name
    integer :: ni
    ni = self%n_graph_inputs()
    if (v <= ni) then
      name = self%in_names(v)%s
    else
      name = self%layers(v - ni)%l%name
    end if
  end function model_value_name

  integer function model_find_value(self, name)
    !! The value id of the input or layer called name, or 0.
    class(fkb_model_t), intent(in) :: self
    character(len=*), intent(in) :: name
    integer :: v
    model_find_value = 0
    do v = 1, self%n_graph_inputs() + self%n_layers
      if (self%value_name(v) == name) then
        model_find_value = v
        return
      end if
    end do
  end function model_find_value

  logical function model_is_chain(self)
    !! One input, one output (the last layer), every layer taking the previous value.
    class(fkb_model_t), intent(in) :: self
    integer :: i
    integer, allocatable :: outs(:)
    model_is_chain = self%n_graph_inputs() == 1
    outs = self%output_values()
    model_is_chain = model_is_chain .and. size(outs) == 1 .and. outs(1) == 1 + self%n_layers
    do i = 1, self%n_layers
      if (.not. model_is_chain) return
      model_is_chain = size(self%layers(i)%src) == 1 .and. self%layers(i)%src(1) == i
    end do
  end function model_is_chain

  logical function model_uses_graph_records(self)
    !! Whether the header needs format 1.2 records or keys (shaped or named inputs, inputs=,
    !! an output record, time_distributed).
    class(fkb_model_t), intent(in) :: self
    integer :: i
    model_uses_graph_records = .not. self%is_chain() .or. self%n_graph_inputs() /= 1
    if (model_uses_graph_records) return
    model_uses_graph_records = size(self%in_shapes(1)%d) /= 1 .or. self%in_names(1)%s /= 'input'
    do i = 1, self%n_layers
      model_uses_graph_records = model_uses_graph_records .or. &
                                 self%layers(i)%l%time_distributed
    end do
  end function model_uses_graph_records

  subroutine model_add_input(self, shape, name, stat, msg)
    !! Declares the next input of the model (before any layer); name '' takes the default.
    class(fkb_model_t), intent(inout) :: self
    integer(int64), intent(in) :: shape(:)
    character(len=*), intent(in) :: name
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    character(len=:), allocatable :: nm
    integer :: k
    stat = FKB_OK
    if (.not. allocated(self%in_shapes)) allocate(self%in_shapes(0), self%in_names(0))
    k = size(self%in_shapes) + 1
    nm = name
    if (len(nm) == 0) nm = default_input_name(k)
    if (self%n_layers > 0) then
      call set_error(stat, msg, FKB_ERR_FORMAT, "input '" // nm // "' after the first layer")
    else if (size(shape) < 1 .or. any(shape < 1)) then
      call set_error(stat, msg, FKB_ERR_FORMAT, "input '" // nm // "' has an empty shape")
    else if (product(shape) > BLAS_INT_MAX) then
      call set_error(stat, msg, FKB_ERR_FORMAT, "input '" // nm // "' is too large")
    else if (self%find_value(nm) > 0) then
      call set_error(stat, msg, FKB_ERR_FORMAT, "two inputs are called '" // nm // "'")
    end if
    if (stat /= FKB_OK) return
    call grow_inputs()
    self%in_shapes(k)%d = shape
    self%in_names(k)%s = nm
    if (k == 1) self%n_in = product(shape)
  contains
    subroutine grow_inputs()
      ! One more slot in each list (move_alloc: array constructors of types with allocatable
      ! components leak with gfortran 12).
      type(shape_t), allocatable :: shapes(:)
      type(string_t), allocatable :: names(:)
      integer :: j
      allocate(shapes(k), names(k))
      do j = 1, k - 1
        call move_alloc(self%in_shapes(j)%d, shapes(j)%d)
        call move_alloc(self%in_names(j)%s, names(j)%s)
      end do
      call move_alloc(shapes, self%in_shapes)
      call move_alloc(names, self%in_names)
    end subroutine grow_inputs
  end subroutine model_add_input

  subroutine model_set_outputs(self, names, stat, msg)
    !! The `output` record: names (comma-separated, items percent-encoded) of the outputs.
    class(fkb_model_t), intent(inout) :: self
    character(len=*), intent(in) :: names
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    integer, allocatable :: v(:)
    stat = FKB_OK
    call resolve_names(self, names, 'output record', v, stat, msg)
    if (stat /= FKB_OK) return
    if (size(v) == 0) then
      call set_error(stat, msg, FKB_ERR_FORMAT, 'output record without names')
      return
    end if
    self%outputs = v
  end subroutine model_set_outputs

  subroutine resolve_names(self, list, where, v, stat, msg)
    ! Value ids of a comma-separated list of percent-encoded names: each must be defined, and
    ! appear once.
    class(fkb_model_t), intent(in) :: self
    character(len=*), intent(in) :: list, where
    integer, allocatable, intent(out) :: v(:)
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    type(string_t), allocatable :: items(:)
    character(len=:), allocatable :: nm
    logical :: ok
    integer :: k
    stat = FKB_OK
    items = split_fields(list, ',')
    allocate(v(size(items)))
    do k = 1, size(items)
      call percent_decode(items(k)%s, nm, ok)
      if (.not. ok) then
        call set_error(stat, msg, FKB_ERR_FORMAT, where // ": bad percent-encoding in '" // &
                       items(k)%s // "'")
        return
      end if
      v(k) = self%find_value(nm)
      if (v(k) == 0) then
        call set_error(stat, msg, FKB_ERR_FORMAT, where // ": '" // nm // &
                       "' is not an input or an earlier layer")
        return
      end if
      if (any(v(1:k - 1) == v(k))) then
        call set_error(stat, msg, FKB_ERR_FORMAT, where // ": '" // nm // "' named twice")
        return
      end if
    end do
  end subroutine resolve_names

  subroutine model_add_layer(self, type_name, name, cfg, stat, msg)
    !! Appends a layer of the given type, configured from cfg (every option must be used).
    !! Option `inputs` (comma-separated, items percent-encoded) names the values it takes;
    !! without it, the previous layer's output (or the only input).
    class(fkb_model_t), intent(inout) :: self
    character(len=*), intent(in) :: type_name, name
    type(fkb_config_t), intent(inout) :: cfg
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    type(layer_box), allocatable :: grown(:)
    class(fkb_layer_t), allocatable :: layer
    character(len=:), allocatable :: unused, list
    integer, allocatable :: src(:)
    integer(int64), allocatable :: shp(:)
    integer :: ni, k, r
    cfg%where = "layer '" // name // "' (" // type_name // ")"
    if (self%n_graph_inputs() == 0) call self%add_input([self%n_in], '', stat, msg)
    ni = self%n_graph_inputs()
    if (self%find_value(name) > 0) then
      call set_error(stat, msg, FKB_ERR_FORMAT, cfg%where // ": the name '" // name // &
                     "' is already taken")
      return
    end if
    if (cfg%has('inputs')) then
      call cfg%get_text('inputs', list, stat, msg)
      call resolve_names(self, list, cfg%where, src, stat, msg)
      if (stat /= FKB_OK) return
    else if (self%n_layers > 0 .or. ni == 1) then
      src = [ni + self%n_layers]
    else
      call set_error(stat, msg, FKB_ERR_FORMAT, cfg%where // &
                     ': the model has several inputs; the first layer must name its inputs')
      return
    end if
    call new_layer(type_name, layer, stat, msg)
    if (stat /= FKB_OK) then
      msg = msg // " for layer '" // name // "'"
      return
    end if
    layer%name = name
    layer%dtype = self%dtype
    if (size(src) < layer%min_inputs() .or. size(src) > layer%max_inputs()) then
      call set_error(stat, msg, FKB_ERR_FORMAT, cfg%where // ': takes ' // &
                     int_text(int(layer%min_inputs(), int64)) // '..' // &
                     int_text(int(min(layer%max_inputs(), 1000000), int64)) // &
                     ' inputs, got ' // int_text(int(size(src), int64)))
      return
    end if
    allocate(layer%in_shapes(size(src)))
    do k = 1, size(src)
      layer%in_shapes(k)%d = self%value_shape(src(k))
    end do
    shp = layer%in_shapes(1)%d
    r = size(shp)
    if (layer%acts_on_last_axis() .and. r > 1) then
      layer%n_in = shp(r)
      layer%reps = product(shp(1:r - 1))
    else
      layer%n_in = product(shp)
      layer%reps = 1
    end if
    call cfg%get_bool('trainable', layer%trainable, stat, msg, default=.true.)
    if (stat /= FKB_OK) return
    call cfg%get_bool('time_distributed', layer%time_distributed, stat, msg, default=.false.)
    if (stat /= FKB_OK) return
    if (layer%time_distributed .and. (r < 2 .or. .not. layer%acts_on_last_axis())) then
      call set_error(stat, msg, FKB_ERR_FORMAT, cfg%where // &
                     ': time_distributed=1 needs a last-axis layer on data of rank 2 or more')
      return
    end if
    call layer%configure(cfg, stat, msg)
    if (stat /= FKB_OK) return
    unused = cfg%unused_key()
    if (len(unused) > 0) then
      call set_error(stat, msg, FKB_ERR_UNSUPPORTED, cfg%where // ": unknown option '" // &
                     unused // "'")
      return
    end if
    if (layer%n_out < 1 .or. layer%n_out * layer%reps > BLAS_INT_MAX) then
      call set_error(stat, msg, FKB_ERR_FORMAT, cfg%where // ': output width out of range')
      return
    end if
    if (.not. allocated(layer%out_shape)) then
      if (layer%acts_on_last_axis() .and. r > 1) then
        layer%out_shape = [shp(1:r - 1), layer%n_out]
      else if (layer%n_out == product(shp)) then
        layer%out_shape = shp
      else
        layer%out_shape = [layer%n_out]
      end if
    end if
    if (product(layer%out_shape) /= layer%n_out * layer%reps) then
      call set_error(stat, msg, FKB_ERR_FORMAT, cfg%where // ': output shape disagrees with ' &
                     // 'its width (layer implementation error)')
      return
    end if
    if (.not. allocated(self%layers)) allocate(self%layers(4))
    if (self%n_layers == size(self%layers)) then
      allocate(grown(2 * self%n_layers))
      grown(1:self%n_layers) = self%layers(1:self%n_layers)   ! deep copies, done at load only
      call move_alloc(grown, self%layers)
    end if
    self%n_layers = self%n_layers + 1
    call move_alloc(layer, self%layers(self%n_layers)%l)
    self%layers(self%n_layers)%src = src
  end subroutine model_add_layer

  subroutine model_set_meta(self, key, value)
    class(fkb_model_t), intent(inout) :: self
    character(len=*), intent(in) :: key, value
    integer :: i
    if (.not. allocated(self%meta)) allocate(self%meta(0))
    do i = 1, size(self%meta)
      if (self%meta(i)%key == key) then
        self%meta(i)%value = value
        return
      end if
    end do
    self%meta = [self%meta, meta_item(key, value)]
  end subroutine model_set_meta

  function model_get_meta(self, key) result(value)
    !! The metadata value of key, or '' if absent.
    class(fkb_model_t), intent(in) :: self
    character(len=*), intent(in) :: key
    character(len=:), allocatable :: value
    integer :: i
    value = ''
    if (.not. allocated(self%meta)) return
    do i = 1, size(self%meta)
      if (self%meta(i)%key == key) value = self%meta(i)%value
    end do
  end function model_get_meta

  subroutine model_prepare(self, stat, msg)
    !! Lets every layer derive its constants from its tensors.
    class(fkb_model_t), intent(inout) :: self
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    integer :: i
    stat = FKB_OK
    do i = 1, self%n_layers
      call self%layers(i)%l%prepare(stat, msg)
      if (stat /= FKB_OK) return
    end do
  end subroutine model_prepare

  subroutine model_release(self)
    !! Lets every layer free what it holds outside Fortran (fkb_layer_t%release); called by the
    !! network once for the model it drops. The model stays valid for everything but forward.
    class(fkb_model_t), intent(inout) :: self
    integer :: i
    if (.not. allocated(self%layers)) return
    do i = 1, self%n_layers
      if (allocated(self%layers(i)%l)) call self%layers(i)%l%release()
    end do
  end subroutine model_release

  function model_header(self, train) result(text)
    !! The header text of the `.fkb` file of this model (docs/format.md), with the training
    !! records if `train` is given.
    class(fkb_model_t), intent(in) :: self
    type(train_record_t), intent(in), optional :: train
    character(len=:), allocatable :: text
    character, parameter :: nl = new_line('a')
    type(fkb_config_t) :: cfg
    integer :: i, k, ni
    integer, allocatable :: outs(:)
    ni = self%n_graph_inputs()
    text = 'fkb-model' // nl // 'dtype ' // dtype_name(self%dtype) // nl
    do i = 1, ni
      text = text // 'input ' // list_text(self%in_shapes(i)%d)
      if (self%in_names(i)%s /= default_input_name(i)) &
        text = text // ' name=' // percent_encode(self%in_names(i)%s)
      text = text // nl
    end do
    do i = 1, self%n_layers
      associate (l => self%layers(i)%l, src => self%layers(i)%src)
        cfg = fkb_config_t()
        call cfg%set('name', l%name)
        call l%options(cfg)
        if (.not. l%trainable) call cfg%set('trainable', '0')
        if (l%time_distributed) call cfg%set('time_distributed', '1')
        text = text // 'layer ' // l%type_name // cfg%to_text()
        if (size(src) /= 1 .or. src(1) /= ni + i - 1 .or. (i == 1 .and. ni /= 1)) &
          text = text // ' inputs=' // names_text(src)
        text = text // nl
        if (allocated(l%params)) then
          do k = 1, size(l%params)
            text = text // 'tensor ' // l%params(k)%name // ' ' // dtype_name(self%dtype) // &
                   ' ' // l%params(k)%shape_text() // nl
          end do
        end if
      end associate
    end do
    outs = self%output_values()
    if (size(outs) /= 1 .or. outs(1) /= ni + self%n_layers) &
      text = text // 'output ' // names_text(outs) // nl
    if (allocated(self%meta)) then
      do i = 1, size(self%meta)
        text = text // 'meta ' // percent_encode(self%meta(i)%key) // ' ' // &
               percent_encode(self%meta(i)%value) // nl
      end do
    end if
    if (present(train)) then
      text = text // 'optimizer ' // percent_encode(train%optimizer) // nl // 'loss ' // &
             percent_encode(train%loss) // nl // 'state ' // percent_encode(train%state) // nl
      do i = 1, size(train%slots)
        text = text // 'slot ' // train%slot_names(i)%s // ' float64 ' // &
               int_text(size(train%slots(i)%m, kind=int64)) // nl
      end do
    end if
    text = text // 'end' // nl
  contains
    function names_text(v) result(t)
      integer, intent(in) :: v(:)
      character(len=:), allocatable :: t
      integer :: j
      t = percent_encode(self%value_name(v(1)))
      do j = 2, size(v)
        t = t // ',' // percent_encode(self%value_name(v(j)))
      end do
    end function names_text
  end function model_header

  pure function default_input_name(k) result(name)
    !! The name of the k-th input when its record has none: input, input_2, input_3, ...
    integer, intent(in) :: k
    character(len=:), allocatable :: name
    name = 'input'
    if (k > 1) name = 'input_' // int_text(int(k, int64))
  end function default_input_name

  pure function list_text(d) result(t)
    !! "D1,D2,..." for a shape.
    integer(int64), intent(in) :: d(:)
    character(len=:), allocatable :: t
    integer :: j
    t = int_text(d(1))
    do j = 2, size(d)
      t = t // ',' // int_text(d(j))
    end do
  end function list_text

end module fkb_model
